"""Certificate-chain checks for licence signatures: :func:`ca.path.validate_chain` with licence
reasons.

The path rules (names chain, each signature verifies under its issuer's key, every certificate
is within its validity at the given time, issuers are CAs allowed to sign certificates, and the
leaf may make signatures) live in :mod:`ca.path`; no network and no revocation (the status list
and the CA's CRL/OCSP answer that separately).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from ca.path import (
    MAX_CHAIN,
    PathInvalid,
    PathProblem,
    signed_by,
    signing_problem,
    validate_chain,
)
from license.errors import LicenceVerificationFailed, Reason

__all__ = ["MAX_CHAIN", "chain_from", "check_signing_certificate", "verify_chain"]

_REASONS = {
    PathProblem.NO_CHAIN: Reason.MISSING_CHAIN,
    PathProblem.UNTRUSTED: Reason.UNTRUSTED_CHAIN,
    PathProblem.EXPIRED: Reason.CERTIFICATE_EXPIRED,
    PathProblem.WRONG_LEAF: Reason.WRONG_CERTIFICATE,
    PathProblem.MALFORMED: Reason.MALFORMED,
}


def check_signing_certificate(cert: x509.Certificate) -> None:
    """The leaf must be an end entity allowed to make digital signatures."""
    problem = signing_problem(cert)
    if problem:
        raise LicenceVerificationFailed(Reason.WRONG_CERTIFICATE, problem)


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
    try:
        return validate_chain(chain, roots, at=at)
    except PathInvalid as exc:
        raise LicenceVerificationFailed(_REASONS[exc.problem], exc.message) from None


def chain_from(
    leaf: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """``leaf`` and its issuers found among ``candidates`` (unordered, e.g. the certificates a
    document carries), in order: at each step the candidate named as the issuer whose key
    signed the certificate; it stops at a self-issued certificate, an issuer not found or
    :data:`MAX_CHAIN` certificates. Whether the chain is trusted is :func:`verify_chain`'s."""
    chain = [leaf]
    current = leaf
    while len(chain) < MAX_CHAIN and current.issuer != current.subject:
        issuer = next(
            (
                c
                for c in candidates
                if c.subject == current.issuer and c not in chain and signed_by(current, c)
            ),
            None,
        )
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    return chain
