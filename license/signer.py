"""Licence signing keys and x5c-chained compact JWS (signed data, status lists, reports).

The JWS primitive (key-store signing, raw ECDSA signatures, python-jose verification with one
explicit alg) is :mod:`hsm.jws`; this module adds what licences need on top: a signer that is a
key-store key plus its certificate chain, the chain in the ``x5c`` header, canonical JSON, and
verification that checks the chain to trusted roots first. The accepted ``alg`` is derived from
the verified certificate's key, never taken from the header.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from govtrust.audit import canonical_json
from hsm import jws
from hsm.jws import b64url, b64url_decode, unverified_payload
from hsm.keystore import KeyRef, KeyStore
from license.chain import verify_chain
from license.errors import LicenceVerificationFailed, Reason

__all__ = [
    "LicenceSigner",
    "VerifiedJws",
    "alg_for_key",
    "b64url",
    "b64url_decode",
    "sign_compact",
    "unverified_payload",
    "verify_compact",
]


def alg_for_key(public_key: object) -> str:
    """The one JWS alg accepted for a public key (:func:`hsm.jws.alg_for_key`), as a licence
    verification failure when there is none."""
    try:
        return jws.alg_for_key(public_key)
    except jws.UnsupportedKey as exc:
        raise LicenceVerificationFailed(Reason.UNSUPPORTED_ALGORITHM, str(exc)) from None


@dataclass(frozen=True)
class LicenceSigner:
    """A department's signing key in the key store plus its certificate chain (leaf first).

    ``chain`` should not include the root (verifiers have it); the leaf's public key must be
    the key's public key.
    """

    keystore: KeyStore
    key: KeyRef
    chain: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("a signer needs at least its own certificate")
        leaf = (
            self.chain[0].public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        )
        if leaf != self.key.public_key_der:
            raise ValueError("the leaf certificate does not certify the signing key")

    @cached_property
    def alg(self) -> str:
        """The JWS alg of the signing key (ES256, ES384 or RS256)."""
        return alg_for_key(self.chain[0].public_key())

    @cached_property
    def organisation(self) -> str:
        """The O= of the signing certificate (the department's name), or empty."""
        names = self.chain[0].subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(names[0].value) if names else ""

    @cached_property
    def x5c(self) -> list[str]:
        """The chain as the JWS ``x5c`` header value (standard base64 DER, leaf first)."""
        return [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in self.chain]

    def sign_raw(self, data: bytes) -> bytes:
        """Sign ``data`` in the JOSE/COSE signature format (raw r||s for ECDSA)."""
        return jws.sign_raw(self.keystore, self.key, self.alg, data)


def sign_compact(
    signer: LicenceSigner,
    payload: Mapping[str, Any],
    *,
    typ: str,
    extra_header: Mapping[str, Any] | None = None,
) -> str:
    """Canonical-JSON ``payload`` as a compact JWS with ``x5c`` in the protected header."""
    header = {"alg": signer.alg, "typ": typ, "x5c": signer.x5c, **(extra_header or {})}
    return jws.sign_compact(signer.keystore, signer.key, header, payload, encode=canonical_json)


@dataclass(frozen=True)
class VerifiedJws:
    """A JWS whose signature and chain checked out."""

    header: dict[str, Any]
    payload: dict[str, Any]
    payload_bytes: bytes
    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def _header(token: str) -> dict[str, Any]:
    try:
        return jws.unverified_header(token)
    except jws.NotCompact:
        raise LicenceVerificationFailed(
            Reason.MALFORMED, "not a compact JWS (three parts)"
        ) from None
    except jws.BadHeader as exc:
        raise LicenceVerificationFailed(Reason.MALFORMED, f"bad JWS header: {exc}") from None
    except jws.HeaderNotObject:
        raise LicenceVerificationFailed(Reason.MALFORMED, "JWS header is not an object") from None


def _chain(header: Mapping[str, Any]) -> tuple[x509.Certificate, ...]:
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise LicenceVerificationFailed(Reason.MISSING_CHAIN, "no x5c certificate chain")
    try:
        return tuple(x509.load_der_x509_certificate(base64.b64decode(c)) for c in x5c)
    except (ValueError, binascii.Error) as exc:
        raise LicenceVerificationFailed(Reason.MALFORMED, f"bad x5c certificate: {exc}") from None


def verify_compact(
    token: str,
    roots: Sequence[x509.Certificate],
    *,
    typ: str,
    at: datetime | None = None,
    until_leaf_expiry: bool = False,
) -> VerifiedJws:
    """Verify a compact JWS made by :func:`sign_compact`: chain to ``roots``, then signature.

    The chain is checked at ``at`` (default now); with ``until_leaf_expiry`` and no ``at``, at
    the earlier of now and the leaf's expiry (for long-lived signed objects: the caller then
    checks that the object's claimed signing time falls within the leaf's validity).
    """
    if not isinstance(token, str) or not token.isascii():
        raise LicenceVerificationFailed(Reason.MALFORMED, "a JWS is an ASCII string")
    header = _header(token)
    if header.get("typ") != typ:
        raise LicenceVerificationFailed(Reason.MALFORMED, f"JWS typ must be {typ}")
    chain = _chain(header)
    if at is None and until_leaf_expiry:
        at = min(datetime.now(UTC), chain[0].not_valid_after_utc)
    verify_chain(chain, roots, at=at)
    public_key = chain[0].public_key()
    alg = alg_for_key(public_key)
    if header.get("alg") != alg:
        raise LicenceVerificationFailed(
            Reason.UNSUPPORTED_ALGORITHM, f"JWS alg must be {alg} for this certificate"
        )
    try:
        payload_bytes = jws.verify(token, public_key, alg)
    except jws.BadSignature as exc:
        raise LicenceVerificationFailed(
            Reason.BAD_SIGNATURE, f"signature does not verify: {exc}"
        ) from None
    try:
        payload = jws.parse_payload(payload_bytes)
    except jws.BadPayload as exc:
        raise LicenceVerificationFailed(Reason.MALFORMED, f"payload is not JSON: {exc}") from None
    except jws.PayloadNotObject:
        raise LicenceVerificationFailed(Reason.MALFORMED, "payload is not a JSON object") from None
    return VerifiedJws(header, payload, payload_bytes, chain[0], chain)
