"""The offline QR payload: COSE_Sign1 → zlib → Base45 with the prefix ``GT1:`` (as the EU DCC).

Payload (a CBOR map with small integer keys, like a CWT)::

    1 ZZBS identifier   2 ZZMC name        3 CZZT holder       4 CZZTDM holder code
    5 CZZTDMLX          6 ZZBFRQ yyyymmdd  7 ZZYXQQSRQ         8 ZZYXQJZRQ (0 = 长期)
    9 status index      10 first 16 bytes of SHA-256 of the signed data's canonical JSON

Protected header ``{1: alg, 4: kid}`` where kid is the first 8 bytes of the SHA-256 of the
signing certificate (DER), as in the DCC. A leaf certificate (~500-700 bytes DER, ~1,000 Base45
characters) does not fit the 600-character budget, so verifiers resolve the kid in a
:class:`TrustList`: the issuers' certificate chains, downloaded once and cached. The list needs
no signature of its own: each chain is checked against the verifier's root when the list is
loaded, so with only the root and a cached list a QR verifies with no network. A typical
business licence encodes to about 400 characters (alphanumeric mode, one QR code of version ~12).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from govtrust.errors import InvalidArgument
from license.base45 import b45decode, b45encode
from license.chain import verify_chain
from license.days import licence_day
from license.errors import LicenceVerificationFailed, Reason
from license.identifiers import parse_identifier
from license.signed_data import LicenceMetadata, signer_uscc
from license.signer import LicenceSigner, alg_for_key

PREFIX = "GT1:"
COSE_SIGN1_TAG = 18
COSE_ALGS = {"ES256": -7, "ES384": -35, "RS256": -257}
MAX_PAYLOAD_CHARS = 4296  # the alphanumeric capacity of a version-40 QR code
MAX_INFLATED = 4096
DIGEST_BYTES = 16
_ECDSA = {"ES256": ec.ECDSA(hashes.SHA256()), "ES384": ec.ECDSA(hashes.SHA384())}


def kid_of(cert: x509.Certificate) -> bytes:
    """The key id of a signing certificate: SHA-256 of its DER, first 8 bytes (as the DCC)."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()[:8]


def _ymd(value: date) -> int:
    return value.year * 10000 + value.month * 100 + value.day


def _from_ymd(value: object) -> date:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("date must be an integer yyyymmdd")
    return date(value // 10000, value // 100 % 100, value % 100)


def metadata_digest(metadata: LicenceMetadata) -> bytes:
    """What binds the QR to the full signed data: SHA-256 of its canonical JSON, 16 bytes."""
    return hashlib.sha256(metadata.canonical()).digest()[:DIGEST_BYTES]


def _claims(metadata: LicenceMetadata) -> dict[int, Any]:
    return {
        1: metadata.identifier,
        2: metadata.name,
        3: metadata.holder_name,
        4: metadata.holder_code,
        5: metadata.holder_code_type,
        6: _ymd(metadata.issue_date),
        7: _ymd(metadata.valid_from),
        8: _ymd(metadata.valid_until) if metadata.valid_until else 0,
        9: metadata.status_index if metadata.status_index is not None else -1,
        10: metadata_digest(metadata),
    }


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


@functools.lru_cache(maxsize=256)
def _protected_header(alg: str, cert: x509.Certificate) -> bytes:
    return bytes(cbor2.dumps({1: COSE_ALGS[alg], 4: kid_of(cert)}))


def encode_payload(signer: LicenceSigner, metadata: LicenceMetadata) -> str:
    """Sign the compact claims as COSE_Sign1 and return ``GT1:`` + Base45(zlib(COSE))."""
    alg = signer.alg
    protected = _protected_header(alg, signer.chain[0])
    payload = cbor2.dumps(_claims(metadata))
    signature = signer.sign_raw(_sig_structure(protected, payload))
    cose = cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    return PREFIX + b45encode(zlib.compress(cose, 9))


@dataclass(frozen=True)
class TrustedSigner:
    """A verified signing certificate in the trust list."""

    kid: bytes
    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    alg: str
    uscc: str | None
    valid_from: date  # the certificate's validity, as dates (a licence's issue date must fit)
    valid_until: date
    ecdsa: ec.ECDSA | None  # the prepared ECDSA algorithm object (None for RSA)


class TrustList:
    """Issuer signing certificates by kid, each chain checked against ``roots`` when added."""

    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        self.roots = tuple(roots)
        self._signers: dict[bytes, TrustedSigner] = {}

    def __len__(self) -> int:
        return len(self._signers)

    def add(self, chain: Sequence[x509.Certificate]) -> TrustedSigner:
        """Verify ``chain`` (leaf first) and index its leaf; raises on an untrusted chain.

        The chain is checked at the earlier of now and the leaf's expiry, so licences signed
        while a since-expired seal certificate was valid still verify (each QR's issue date
        must fall within the leaf's validity).
        """
        leaf = chain[0]
        at = min(datetime.now(UTC), leaf.not_valid_after_utc)
        verify_chain(chain, self.roots, at=at)
        public_key = leaf.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise LicenceVerificationFailed(Reason.UNSUPPORTED_ALGORITHM, "unsupported key")
        entry = TrustedSigner(
            kid_of(leaf),
            leaf,
            public_key,
            alg_for_key(public_key),
            signer_uscc(leaf),
            licence_day(leaf.not_valid_before_utc),  # ZZBFRQ is a Beijing day
            licence_day(leaf.not_valid_after_utc),
            _ECDSA.get(alg_for_key(public_key)),
        )
        self._signers[entry.kid] = entry
        return entry

    def get(self, kid: bytes) -> TrustedSigner | None:
        return self._signers.get(kid)

    @classmethod
    def load(
        cls, roots: Sequence[x509.Certificate], document: str | bytes, *, strict: bool = False
    ) -> TrustList:
        """Load an exported list; chains that do not verify are skipped (or raise if strict)."""
        trust = cls(roots)
        try:
            data = json.loads(document)
            chains = data["chains"]
            if data.get("v") != 1 or not isinstance(chains, list):
                raise ValueError("unsupported trust list")
            parsed = [
                [x509.load_der_x509_certificate(base64.b64decode(c)) for c in chain]
                for chain in chains
            ]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise LicenceVerificationFailed(Reason.MALFORMED, f"bad trust list: {exc}") from None
        for chain in parsed:
            try:
                trust.add(chain)
            except LicenceVerificationFailed:
                if strict:
                    raise
        return trust


def export_trust_list(
    chains: Iterable[Sequence[x509.Certificate]],
    sm2_chains: Iterable[Sequence[x509.Certificate]] = (),
) -> str:
    """Serialise issuer chains (leaf first) as a trust list document: ``chains`` the JWS/QR
    signers (what :meth:`TrustList.load` reads), ``sm2_chains`` (when any) the SM2 seal chains
    an OFD licence's GB/T 38540 signature is checked against."""

    def encoded(chain: Sequence[x509.Certificate]) -> list[str]:
        return [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in chain]

    document: dict[str, object] = {"v": 1, "chains": [encoded(chain) for chain in chains]}
    sm2 = [encoded(chain) for chain in sm2_chains]
    if sm2:
        document["sm2_chains"] = sm2
    return json.dumps(document, separators=(",", ":"))


@dataclass(frozen=True)
class QrLicence:
    """What a verified QR payload says."""

    identifier: str
    name: str
    holder_name: str
    holder_code: str
    holder_code_type: str
    issue_date: date
    valid_from: date
    valid_until: date | None
    status_index: int | None
    digest: bytes
    signer: TrustedSigner

    def matches(self, metadata: LicenceMetadata) -> bool:
        """True when ``metadata`` (e.g. from the signed data) is what this QR was made from."""
        return metadata_digest(metadata) == self.digest


def _malformed(why: str) -> LicenceVerificationFailed:
    return LicenceVerificationFailed(Reason.MALFORMED, why)


def _unwrap(text: str) -> Sequence[Any]:
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise _malformed(f"a licence QR payload starts with {PREFIX}")
    if len(text) > MAX_PAYLOAD_CHARS:
        raise _malformed("QR payload too long")
    try:
        compressed = b45decode(text[len(PREFIX) :])
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, MAX_INFLATED)
        if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
            raise ValueError("compressed data too long, truncated or followed by other data")
        obj = cbor2.loads(raw)
    except (ValueError, zlib.error, cbor2.CBORDecodeError) as exc:
        raise _malformed(f"QR payload does not decode: {exc}") from None
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise _malformed("not a COSE_Sign1 structure")
        obj = obj.value
    if not (isinstance(obj, list | tuple) and len(obj) == 4):
        raise _malformed("not a COSE_Sign1 structure")
    protected, unprotected, payload, signature = obj
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)):
        raise _malformed("not a COSE_Sign1 structure")
    if unprotected != {}:  # nothing outside the signature may carry meaning
        raise _malformed("the COSE unprotected header must be empty")
    return obj


def _check_signature(signer: TrustedSigner, data: bytes, signature: bytes) -> None:
    key = signer.public_key
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                raise InvalidSignature
            der = encode_dss_signature(
                int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            )
            key.verify(der, data, signer.ecdsa or ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise LicenceVerificationFailed(
            Reason.BAD_SIGNATURE, "the QR signature does not verify"
        ) from None


def decode_payload(text: str, trust: TrustList) -> QrLicence:
    """Verify an offline QR payload with the trust list only (no network).

    Raises :class:`LicenceVerificationFailed`: ``MALFORMED``, ``UNKNOWN_KEY`` (kid not in the
    trust list), ``UNSUPPORTED_ALGORITHM``, ``BAD_SIGNATURE`` (tampered), ``ISSUER_MISMATCH``
    or ``CERTIFICATE_EXPIRED`` (issued outside the signing certificate's validity). Status
    (revoked / suspended) and expiry of the licence are separate checks.
    """
    protected_bytes, _, payload_bytes, signature = _unwrap(text)
    try:
        protected = cbor2.loads(protected_bytes)
        kid, alg = protected[4], protected[1]
    except (ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
        raise _malformed("bad COSE protected header") from None
    if not isinstance(kid, bytes):
        raise _malformed("bad COSE kid")
    signer = trust.get(kid)
    if signer is None:
        raise LicenceVerificationFailed(
            Reason.UNKNOWN_KEY, f"signing key {kid.hex()} is not in the trust list"
        )
    if alg != COSE_ALGS[signer.alg]:
        raise LicenceVerificationFailed(
            Reason.UNSUPPORTED_ALGORITHM, f"COSE alg must be {signer.alg} for this key"
        )
    _check_signature(signer, _sig_structure(protected_bytes, payload_bytes), signature)
    try:
        claims = cbor2.loads(payload_bytes)
        end = claims[8]
        index = claims[9]
        result = QrLicence(
            identifier=_str(claims[1]),
            name=_str(claims[2]),
            holder_name=_str(claims[3]),
            holder_code=_str(claims[4]),
            holder_code_type=_str(claims[5]),
            issue_date=_from_ymd(claims[6]),
            valid_from=_from_ymd(claims[7]),
            valid_until=None if end == 0 else _from_ymd(end),
            status_index=None if index == -1 else int(index),
            digest=bytes(claims[10]),
            signer=signer,
        )
    except (ValueError, KeyError, TypeError, cbor2.CBORDecodeError) as exc:
        raise _malformed(f"bad QR claims: {exc}") from None
    try:
        ident = parse_identifier(result.identifier, check_uscc=False)
    except InvalidArgument as exc:
        raise _malformed(f"bad identifier: {exc.message}") from None
    if signer.uscc is None or signer.uscc != ident.issuer_code:
        raise LicenceVerificationFailed(
            Reason.ISSUER_MISMATCH, "the signing certificate does not name the issuer"
        )
    if not signer.valid_from <= result.issue_date <= signer.valid_until:
        raise LicenceVerificationFailed(
            Reason.CERTIFICATE_EXPIRED, "issued outside the signing certificate's validity"
        )
    return result


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value
