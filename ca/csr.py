"""Parse and check PKCS#10 certificate signing requests.

The CSR contributes only its public key: its signature proves possession of the private key;
its subject and requested extensions are ignored (the subject comes from the registry).
Accepted keys: EC P-256, EC P-384, RSA with a modulus of at least 2048 bits (and at most 8192,
exponent 65537 or another odd value ≥ 3), and SM2 (curve ``1.2.156.10197.1.301``, a CSR signed
SM3-with-SM2 with the default signer ID 1234567812345678, as ``openssl req`` makes it).
Everything else is an ``InvalidArgument`` naming
the ``csr`` field and what is wrong.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from asn1crypto import csr as asn1_csr
from asn1crypto import keys, pem
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from govtrust.errors import InvalidArgument
from hsm.errors import InvalidSm2PublicKey, InvalidSm2Signature, InvalidSm2SignerId
from hsm.keystore import KeyAlgorithm
from hsm.sm2 import SM2_CURVE_OID, SM3_WITH_SM2_OID, parse_public_key, verify_sm2_signature

MAX_CSR_BYTES = 64 * 1024
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_PEM_MARKER = re.compile(rb"-----BEGIN (NEW )?CERTIFICATE REQUEST-----")


@dataclass(frozen=True)
class ParsedCsr:
    """A CSR whose signature verified: the public key (SPKI DER), its key identifier and
    algorithm."""

    spki_der: bytes
    key_id: bytes  # RFC 5280 method 1 (SHA-1 of the subjectPublicKey bits)
    key_algorithm: KeyAlgorithm
    der: bytes

    @property
    def family(self) -> str:
        """``ec`` or ``rsa``."""
        return "rsa" if self.key_algorithm.value.startswith("rsa") else "ec"


def _bad(description: str) -> InvalidArgument:
    return InvalidArgument.field("csr", description)


def key_algorithm_of(spki: keys.PublicKeyInfo, field: str = "csr") -> KeyAlgorithm:
    """Classify a public key; reject anything but P-256, P-384 and RSA 2048–8192."""
    try:
        algorithm = spki.algorithm
        if algorithm == "ec":
            curve = spki.curve[1]
            if curve == SM2_CURVE_OID:
                _sm2_point(spki.dump(), field)
                return KeyAlgorithm.SM2
            if curve == "secp256r1":
                return KeyAlgorithm.EC_P256
            if curve == "secp384r1":
                return KeyAlgorithm.EC_P384
            raise InvalidArgument.field(
                field, f"EC curve {curve} is not accepted (use P-256 or P-384)"
            )
        if algorithm == "rsa":
            bits = spki.bit_size
            exponent = spki["public_key"].parsed["public_exponent"].native
            if bits < 2048:
                raise InvalidArgument.field(
                    field, f"RSA key of {bits} bits is too weak (at least 2048 bits)"
                )
            if bits > 8192:
                raise InvalidArgument.field(
                    field, f"RSA key of {bits} bits is too large (max 8192)"
                )
            if exponent < 3 or exponent % 2 == 0:
                raise InvalidArgument.field(field, "RSA public exponent must be odd and ≥ 3")
            return KeyAlgorithm.RSA_3072 if bits >= 3072 else KeyAlgorithm.RSA_2048
    except InvalidArgument:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument.field(field, f"the public key is malformed: {exc}") from None
    raise InvalidArgument.field(
        field, f"key algorithm {spki.algorithm} is not accepted (use EC P-256/P-384 or RSA ≥ 2048)"
    )


def _sm2_point(spki_der: bytes, field: str) -> bytes:
    try:
        return parse_public_key(spki_der)
    except InvalidSm2PublicKey as exc:
        raise InvalidArgument.field(field, f"the SM2 public key is not accepted: {exc}") from None


def _parse_sm2_csr(der: bytes, request: asn1_csr.CertificationRequest) -> ParsedCsr:
    """An SM2 CSR: the key is checked and the SM3-with-SM2 signature (default signer ID)
    verified over the CertificationRequestInfo."""
    info = request["certification_request_info"]
    spki_der = info["subject_pk_info"].dump()
    point = _sm2_point(spki_der, "csr")
    algorithm = request["signature_algorithm"]["algorithm"].dotted
    if algorithm != SM3_WITH_SM2_OID:
        raise _bad(f"an SM2 key's CSR must be signed SM3-with-SM2, not {algorithm}")
    try:
        verify_sm2_signature(spki_der, None, info.dump(), request["signature"].native)
    except (InvalidSm2Signature, InvalidSm2SignerId) as exc:
        raise _bad(
            f"signature does not verify (no proof of possession of the private key): {exc}"
        ) from None
    key_id = hashlib.sha1(point).digest()  # noqa: S324 - the RFC 5280 key identifier
    return ParsedCsr(spki_der, key_id, KeyAlgorithm.SM2, der)


def _sm2_request(der: bytes) -> asn1_csr.CertificationRequest | None:
    """The parsed request when its key is on the SM2 curve, else None."""
    try:
        request = asn1_csr.CertificationRequest.load(der)
        spki = request["certification_request_info"]["subject_pk_info"]
        if spki["algorithm"]["algorithm"].native != "ec":
            return None
        parameters = spki["algorithm"]["parameters"]
        if parameters.name != "named" or parameters.chosen.dotted != SM2_CURVE_OID:
            return None
    except (ValueError, TypeError, KeyError):
        return None
    return request


def to_der(data: bytes) -> bytes:
    """The DER of a PEM or DER CSR (``InvalidArgument`` when neither)."""
    if not data:
        raise _bad("is empty")
    if len(data) > MAX_CSR_BYTES:
        raise _bad(f"is larger than {MAX_CSR_BYTES} bytes")
    stripped = data.strip()
    if stripped.startswith(b"-----"):
        if not _PEM_MARKER.match(stripped):
            raise _bad("PEM block is not a CERTIFICATE REQUEST")
        try:
            _, _, der = pem.unarmor(stripped)
        except ValueError as exc:
            raise _bad(f"malformed PEM: {exc}") from None
        return bytes(der)
    return data


def _classify(public: object) -> KeyAlgorithm:
    if isinstance(public, ec.EllipticCurvePublicKey):
        curve = public.curve.name
        if curve == "secp256r1":
            return KeyAlgorithm.EC_P256
        if curve == "secp384r1":
            return KeyAlgorithm.EC_P384
        raise _bad(f"EC curve {curve} is not accepted (use P-256 or P-384)")
    if isinstance(public, rsa.RSAPublicKey):
        bits = public.key_size
        if bits < 2048:
            raise _bad(f"RSA key of {bits} bits is too weak (at least 2048 bits)")
        if bits > 8192:
            raise _bad(f"RSA key of {bits} bits is too large (max 8192)")
        exponent = public.public_numbers().e
        if exponent < 3 or exponent % 2 == 0:
            raise _bad("RSA public exponent must be odd and ≥ 3")
        return KeyAlgorithm.RSA_3072 if bits >= 3072 else KeyAlgorithm.RSA_2048
    raise _bad(f"key type {type(public).__name__} is not accepted (use EC P-256/P-384 or RSA)")


def subject_key_id(public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 4.2.1.2 method 1)."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        bits = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    else:
        bits = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return hashlib.sha1(bits).digest()  # noqa: S324 - the RFC 5280 key identifier


def parse_csr(data: bytes) -> ParsedCsr:
    """Parse a PEM/DER CSR, check its key and verify its signature (proof of possession)."""
    der = to_der(data)
    sm2_request = _sm2_request(der)
    if sm2_request is not None:
        return _parse_sm2_csr(der, sm2_request)
    try:
        request = x509.load_der_x509_csr(der)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise _bad(f"is not a well-formed PKCS#10 request: {exc}") from None
    try:
        public = request.public_key()
    except (ValueError, UnsupportedAlgorithm):
        # cryptography refuses some weak keys outright; classify them for a precise message
        try:
            info = asn1_csr.CertificationRequest.load(der)["certification_request_info"]
            key_algorithm_of(info["subject_pk_info"])
        except (ValueError, TypeError, KeyError) as exc:
            raise _bad(f"the public key is malformed: {exc}") from None
        raise _bad("the public key is not accepted") from None
    algorithm = _classify(public)
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    try:
        digest = request.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise _bad("the signature algorithm is not supported") from None
    if digest is None or digest.name not in _HASHES:
        name = digest.name if digest is not None else "none"
        raise _bad(f"signature digest {name} is not accepted (use SHA-256/384/512)")
    try:
        valid = request.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _bad(f"signature is malformed: {exc}") from None
    if not valid:
        raise _bad("signature does not verify (no proof of possession of the private key)")
    spki_der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ParsedCsr(spki_der, subject_key_id(public), algorithm, der)
