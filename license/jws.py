"""Compact JWS signed through the key store, verified with python-jose against an x5c chain.

The key store returns ECDSA signatures as DER ``SEQUENCE {r, s}``; JWS (RFC 7518 §3.4) wants the
fixed-size ``r || s``, so :func:`der_to_raw` converts. Verification never trusts the header's
``alg``: the algorithm list passed to python-jose is derived from the verified certificate's key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from jose import jws as jose_jws
from jose.exceptions import JOSEError

from govtrust.audit import canonical_json
from hsm.keystore import KeyRef, KeyStore, SignatureScheme
from license.chain import verify_chain
from license.errors import LicenceVerificationFailed, Reason

# JWS alg → key-store scheme, and the curve each ECDSA alg needs.
ALG_SCHEMES: dict[str, SignatureScheme] = {
    "ES256": SignatureScheme.ECDSA_SHA256,
    "ES384": SignatureScheme.ECDSA_SHA384,
    "RS256": SignatureScheme.RSA_PKCS1V15_SHA256,
}
_CURVE_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384"}


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (raises ``binascii.Error``/``ValueError``)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unverified_payload(token: str) -> dict[str, Any]:
    """The JSON payload of a compact JWS, NOT checked: for our own stored tokens (already
    verified when made) or to say what a failed token claimed. ValueError when malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    try:
        data = json.loads(b64url_decode(parts[1]))
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"bad payload: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("the payload is not a JSON object")
    return data


def der_to_raw(signature: bytes, size: int) -> bytes:
    """DER ``SEQUENCE {r, s}`` → ``r || s`` with each half ``size`` bytes."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def alg_for_key(public_key: object) -> str:
    """The one JWS alg accepted for a public key (ES256 for P-256, ES384 for P-384, RS256)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _CURVE_ALGS.get(public_key.curve.name)
        if alg is not None:
            return alg
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return "RS256"
    raise LicenceVerificationFailed(Reason.UNSUPPORTED_ALGORITHM, "unsupported signing key type")


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
        alg = self.alg
        signature = self.keystore.sign(self.key, data, ALG_SCHEMES[alg])
        if alg.startswith("ES"):
            return der_to_raw(signature, 32 if alg == "ES256" else 48)
        return signature


def sign_compact(
    signer: LicenceSigner,
    payload: Mapping[str, Any],
    *,
    typ: str,
    extra_header: Mapping[str, Any] | None = None,
) -> str:
    """Canonical-JSON ``payload`` as a compact JWS with ``x5c`` in the protected header."""
    header = {"alg": signer.alg, "typ": typ, "x5c": signer.x5c, **(extra_header or {})}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(payload))}"
    signature = signer.sign_raw(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


@dataclass(frozen=True)
class VerifiedJws:
    """A JWS whose signature and chain checked out."""

    header: dict[str, Any]
    payload: dict[str, Any]
    payload_bytes: bytes
    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise LicenceVerificationFailed(Reason.MALFORMED, "not a compact JWS (three parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, binascii.Error) as exc:
        raise LicenceVerificationFailed(Reason.MALFORMED, f"bad JWS header: {exc}") from None
    if not isinstance(header, dict):
        raise LicenceVerificationFailed(Reason.MALFORMED, "JWS header is not an object")
    return header


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
        payload_bytes = jose_jws.verify(token, public_key, algorithms=[alg])
    except JOSEError as exc:
        raise LicenceVerificationFailed(
            Reason.BAD_SIGNATURE, f"signature does not verify: {exc}"
        ) from None
    try:
        payload = json.loads(payload_bytes)
    except ValueError as exc:
        raise LicenceVerificationFailed(Reason.MALFORMED, f"payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise LicenceVerificationFailed(Reason.MALFORMED, "payload is not a JSON object")
    return VerifiedJws(header, payload, payload_bytes, chain[0], chain)
