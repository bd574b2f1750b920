"""Certificate login (一证通): a one-time challenge signed with the key behind a certificate.

The holder signs the challenge (UTF-8 bytes) with its certificate's key — ECDSA P-256/SHA-256
(DER signature), RSA PKCS#1 v1.5/SHA-256, or for an SM2 certificate (curve 1.2.156.10197.1.301)
SM2-with-SM3 per GB/T 32918.2 over the default signer ID ``1234567812345678`` (DER
``SEQUENCE{r, s}``, what a GM/T 0016 USB key or ``openssl pkeyutl -sign -rawin -digest sm3``
makes) — in a USB key or our cloud key. The algorithm follows the certificate's key: an SM2
certificate is checked only as SM2 (through :mod:`hsm.sm2`, via :mod:`ca.path`), a P-256 one only
as ECDSA. We check the signature, then ask a :class:`CertificateValidator` for chain, validity
and revocation, and map the subject to a registry identity: a legal person by USCC
(``organizationIdentifier`` = ``NTRCN-<USCC>``) or a citizen by resident ID number
(``serialNumber`` = ``IDCCN-<number>``, or the GM/T 0015 IdentifyCode extension).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from ca.path import Sm2PublicKey, public_key_of, signed_by
from govtrust.db import Database
from hsm.errors import InvalidSm2PublicKey, InvalidSm2Signature
from hsm.sm2 import verify_sm2_point

ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")
GMT_IDENTIFY_CODE = x509.ObjectIdentifier("1.2.156.10260.4.1.1")


class CertificateRejected(Exception):
    """The certificate or the signature is not acceptable (reason is for logs, not users).

    ``code`` names the refusal (e.g. ``sm2_public_key``, ``signature``, ``untrusted``,
    ``revoked``); the message says why.
    """

    def __init__(self, message: str, code: str = "rejected") -> None:
        super().__init__(message)
        self.code = code


class CertificateValidator(Protocol):
    """Verify a client certificate chain to our CAs, its validity period and its status."""

    def validate(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime
    ) -> None:
        """Return when acceptable; raise :class:`CertificateRejected` otherwise."""
        ...


def _valid_at(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


class ChainValidator:
    """Path building to fixed trust anchors, validity at ``at``, and a revocation callback.

    ``is_revoked(cert)`` answers for the leaf and every intermediate (True = revoked or on hold).
    """

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        *,
        is_revoked: object = None,
        max_depth: int = 5,
    ) -> None:
        self.anchors = list(anchors)
        self.is_revoked = is_revoked
        self.max_depth = max_depth

    def _revoked(self, cert: x509.Certificate) -> bool:
        if self.is_revoked is None:
            return False
        return bool(self.is_revoked(cert))  # type: ignore[operator]

    def validate(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime
    ) -> None:
        """Walk issuer links from the leaf to an anchor, checking each signature and period."""
        if _is_ca(leaf):
            raise CertificateRejected("a CA certificate cannot log in", "wrong_leaf")
        current = leaf
        pool = list(intermediates)
        for _depth in range(self.max_depth + 1):
            if not _valid_at(current, at):
                raise CertificateRejected("certificate outside its validity period", "expired")
            if self._revoked(current):
                raise CertificateRejected("certificate revoked or on hold", "revoked")
            for anchor in self.anchors:
                if anchor.subject == current.issuer and _signed_by(current, anchor):
                    if not _valid_at(anchor, at):
                        raise CertificateRejected("trust anchor expired", "expired")
                    return
            parent = next(
                (
                    c
                    for c in pool
                    if c.subject == current.issuer and _is_ca(c) and _signed_by(current, c)
                ),
                None,
            )
            if parent is None:
                raise CertificateRejected("no chain to a trusted CA", "untrusted")
            pool.remove(parent)
            current = parent
        raise CertificateRejected("chain too long", "untrusted")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """The one link check (:func:`ca.path.signed_by`: ECDSA, RSA, EdDSA and SM3-with-SM2)."""
    return signed_by(cert, issuer)


class CaDatabaseValidator:
    """Validation against the CA hierarchy in our database (the CA's tables, through
    :mod:`ca.status`).

    Anchors are the root issuers, intermediates the issuing CAs; a leaf must be a certificate we
    issued whose status is ``active`` (suspended = on hold, revoked: refused).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def validate(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime
    ) -> None:
        """Chain, validity and status from the CA's own look-ups (``ca.status``)."""
        from cryptography.hazmat.primitives.hashes import SHA256

        from ca.status import certificate_status, hierarchy_certificates

        status = certificate_status(self.db, leaf.fingerprint(SHA256()).hex())
        if status is None:
            raise CertificateRejected("certificate not issued by our CA", "untrusted")
        if status == "revoked":
            raise CertificateRejected("certificate revoked", "revoked")
        if status != "active":
            raise CertificateRejected(f"certificate not active ({status})", "revoked")
        root_ders, issuing_ders = hierarchy_certificates(self.db)
        roots = [x509.load_der_x509_certificate(der) for der in root_ders]
        cas = [x509.load_der_x509_certificate(der) for der in issuing_ders]
        ChainValidator(roots).validate(leaf, [*intermediates, *cas], at)


@dataclass(frozen=True)
class CertificateSubject:
    """Who a login certificate names: a citizen's ID number or a legal person's USCC."""

    kind: str  # citizen | legal_person
    identifier: str
    common_name: str


def subject_of(cert: x509.Certificate) -> CertificateSubject:
    """Extract the identity a certificate names (ETSI EN 319 412-1 / GM/T 0015 semantics)."""
    cn_attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cn_attrs[0].value) if cn_attrs else ""
    for attr in cert.subject.get_attributes_for_oid(ORGANIZATION_IDENTIFIER):
        value = str(attr.value)
        if value.startswith("NTRCN-"):
            return CertificateSubject("legal_person", value[6:], cn)
    for attr in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = str(attr.value)
        if value.startswith("IDCCN-"):
            return CertificateSubject("citizen", value[6:], cn)
    try:
        ext = cert.extensions.get_extension_for_oid(GMT_IDENTIFY_CODE).value
        raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        number = _identify_code(raw)
        if number:
            return CertificateSubject("citizen", number, cn)
    except x509.ExtensionNotFound:
        pass
    raise CertificateRejected("the certificate names no citizen or legal person")


def _identify_code(raw: bytes) -> str:
    """residenterCardNumber [0] PrintableString, EXPLICIT or IMPLICIT."""
    from asn1crypto.core import Asn1Value

    try:
        outer = Asn1Value.load(raw)
        contents = outer.contents
        if outer.tag == 0 and contents and contents[0] == 0x13:  # EXPLICIT: inner PrintableString
            return str(Asn1Value.load(contents).contents.decode("ascii"))
        if outer.tag == 0:
            return str(contents.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return ""
    return ""


def parse_chain(pem: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """Leaf and intermediates from PEM text (leaf first)."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CertificateRejected("not a PEM certificate chain") from None
    if not certs:
        raise CertificateRejected("no certificate")
    return certs[0], certs[1:]


def check_challenge_signature(cert: x509.Certificate, challenge: str, signature: bytes) -> None:
    """Verify the holder's signature over the challenge with the certificate's public key:
    SM2-with-SM3 (default signer ID) for an SM2 key, ECDSA/SHA-256 or RSA PKCS#1 v1.5/SHA-256
    otherwise. Refusals name what is wrong (``code``)."""
    data = challenge.encode("utf-8")
    try:
        key = public_key_of(cert)
    except InvalidSm2PublicKey as exc:
        raise CertificateRejected(
            f"the certificate's SM2 public key is unusable: {exc}", "sm2_public_key"
        ) from None
    except (UnsupportedAlgorithm, ValueError):
        raise CertificateRejected("the certificate's public key cannot be read", "key") from None
    if isinstance(key, Sm2PublicKey):
        try:
            verify_sm2_point(key.point, None, data, signature)
        except InvalidSm2Signature as exc:  # with the default ID: another ID fails here too
            raise CertificateRejected(
                "the challenge signature does not verify as SM2-with-SM3 under the certificate's "
                f"SM2 key and the default signer ID 1234567812345678 ({exc})",
                "sm2_signature",
            ) from None
        return
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise CertificateRejected("unsupported key type", "key")
    except InvalidSignature:
        kind = "ECDSA/SHA-256" if isinstance(key, ec.EllipticCurvePublicKey) else "RSA/SHA-256"
        raise CertificateRejected(
            f"the challenge signature does not verify as {kind} under the certificate's key",
            "signature",
        ) from None


def verify_login(
    validator: CertificateValidator,
    chain_pem: str,
    challenge: str,
    signature: bytes,
    at: datetime | None = None,
) -> CertificateSubject:
    """Signature, chain, validity and status; returns who the certificate names."""
    leaf, intermediates = parse_chain(chain_pem)
    check_challenge_signature(leaf, challenge, signature)
    validator.validate(leaf, intermediates, at or datetime.now(UTC))
    return subject_of(leaf)
