"""Compact JWS: signing through the key store, verification with python-jose.

Signing builds ``base64url(header).base64url(payload)`` here and asks the :class:`hsm.KeyStore`
for the signature (python-jose cannot use a key it does not hold). ECDSA signatures come back as
DER and are converted to the fixed-length ``r || s`` that JWS requires (RFC 7518 §3.4).

Verification always passes python-jose one key from our own JWKS and ``algorithms=[<that key's
alg>]``, so neither ``none`` nor an HMAC keyed with a public key can ever be accepted.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwk as jose_jwk
from jose import jws as jose_jws
from jose.exceptions import JOSEError

from hsm import KeyStore, SignatureScheme
from idp.oidc.errors import InvalidToken

SUPPORTED_ALGS = ("ES256", "RS256")
SCHEME_FOR_ALG = {
    "ES256": SignatureScheme.ECDSA_SHA256,
    "RS256": SignatureScheme.RSA_PKCS1V15_SHA256,
}


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url (raises ``ValueError`` on bad input)."""
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sign_jwt(
    keystore: KeyStore,
    keystore_key_id: str,
    *,
    alg: str,
    kid: str,
    claims: dict[str, Any],
    typ: str = "JWT",
) -> str:
    """Sign ``claims`` as a compact JWS with a key-store key."""
    header = {"alg": alg, "kid": kid, "typ": typ}
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}"
    signature = keystore.sign(keystore_key_id, signing_input.encode("ascii"), SCHEME_FOR_ALG[alg])
    if alg == "ES256":
        r, s = decode_dss_signature(signature)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{b64url(signature)}"


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified (only to pick our key by ``kid``)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed JOSE header") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed JOSE header")
    return header


def construct_key(public_jwk: dict[str, Any]) -> Any:
    """A python-jose key object for one of our public JWKs (cached by the caller)."""
    return jose_jwk.construct(public_jwk, public_jwk["alg"])


def verify_signature(token: str, key: Any, alg: str) -> dict[str, Any]:
    """Verify the JWS with exactly ``key`` and ``alg``; return the claims (not yet checked)."""
    if alg not in SUPPORTED_ALGS:
        raise InvalidToken("unsupported algorithm")
    try:
        payload = jose_jws.verify(token, key, algorithms=[alg])
        claims = json.loads(payload)
    except (JOSEError, ValueError):
        raise InvalidToken("signature verification failed") from None
    if not isinstance(claims, dict):
        raise InvalidToken("claims are not a JSON object")
    return claims
