"""Certificate-chain checks for licence signatures: leaf → intermediates → a trusted root.

A deliberately small path validator (no network, no revocation: the status list and the CA's
CRL/OCSP answer that separately): names chain, each signature verifies under its issuer's key,
every certificate is within its validity at the given time, issuers are CAs allowed to sign
certificates, and the leaf may make signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtensionOID

from license.errors import LicenceVerificationFailed, Reason

MAX_CHAIN = 6


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _check_time(cert: x509.Certificate, at: datetime) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise LicenceVerificationFailed(
            Reason.CERTIFICATE_EXPIRED,
            f"certificate {cert.subject.rfc4514_string()} is not valid at {at.isoformat()}",
        )


def _check_issuer(cert: x509.Certificate) -> None:
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
        raise LicenceVerificationFailed(
            Reason.UNTRUSTED_CHAIN, f"{cert.subject.rfc4514_string()} is not a CA certificate"
        )
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
        raise LicenceVerificationFailed(
            Reason.UNTRUSTED_CHAIN, f"{cert.subject.rfc4514_string()} may not sign certificates"
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_signing_certificate(cert: x509.Certificate) -> None:
    """The leaf must be an end entity allowed to make digital signatures."""
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if isinstance(bc, x509.BasicConstraints) and bc.ca:
        raise LicenceVerificationFailed(
            Reason.WRONG_CERTIFICATE, "the signing certificate is a CA certificate"
        )
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    if isinstance(ku, x509.KeyUsage) and not (ku.digital_signature or ku.content_commitment):
        raise LicenceVerificationFailed(
            Reason.WRONG_CERTIFICATE, "the signing certificate may not make digital signatures"
        )


def verify_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    at: datetime | None = None,
) -> x509.Certificate:
    """Check ``chain`` (leaf first; the root may be included or not) ends at one of ``roots``.

    Returns the trusted root. Raises :class:`LicenceVerificationFailed` with reason
    ``UNTRUSTED_CHAIN``, ``CERTIFICATE_EXPIRED`` or ``WRONG_CERTIFICATE``, and ``MALFORMED``
    when a certificate's fields cannot be parsed (cryptography parses them lazily).
    """
    if not chain:
        raise LicenceVerificationFailed(Reason.MISSING_CHAIN, "no signing certificate")
    if len(chain) > MAX_CHAIN:
        raise LicenceVerificationFailed(Reason.UNTRUSTED_CHAIN, "certificate chain too long")
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    try:
        return _walk(chain, roots, moment)
    except ValueError as exc:  # cryptography parses names and extensions lazily
        raise LicenceVerificationFailed(
            Reason.MALFORMED, f"a certificate in the chain cannot be read: {exc}"
        ) from None


def _walk(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], moment: datetime
) -> x509.Certificate:
    check_signing_certificate(chain[0])
    for index, cert in enumerate(chain):
        _check_time(cert, moment)
        for root in roots:
            if cert == root:
                return root
            if _issued_by(cert, root):
                _check_time(root, moment)
                return root
        if index + 1 >= len(chain):
            break
        issuer = chain[index + 1]
        if not _issued_by(cert, issuer):
            raise LicenceVerificationFailed(
                Reason.UNTRUSTED_CHAIN,
                f"{cert.subject.rfc4514_string()} is not issued by the next certificate",
            )
        _check_issuer(issuer)
    raise LicenceVerificationFailed(
        Reason.UNTRUSTED_CHAIN, "the certificate chain does not end at a trusted root"
    )
