"""Compact JWS, the one module: signing through the key store, verification with python-jose.

Signing builds ``base64url(header).base64url(payload)`` here and asks the :class:`KeyStore`
for the signature (python-jose cannot use a key it does not hold). ECDSA signatures come back as
DER ``SEQUENCE {r, s}`` and are converted to the fixed-length ``r || s`` that JWS (RFC 7518
§3.4) and COSE want (:func:`der_to_raw`).

Verification always passes python-jose exactly one key and ``algorithms=[<that key's alg>]``,
chosen by the caller from its own key (the OIDC JWKS, a licence's verified certificate) and never
from the token's header, so neither ``none`` nor an HMAC keyed with a public key can be accepted.

Used by the OIDC provider (ID and access tokens, client assertions), the licence signer
(``license.signer``: signed data, status lists) and signed verification reports. Failures raise
:class:`JwsError` subclasses; each caller maps them to its own error and message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jose import jwk as jose_jwk
from jose import jws as jose_jws
from jose.exceptions import JOSEError

from hsm.keystore import KeyRefOrId, KeyStore, SignatureScheme

# JWS alg → key-store scheme, and the size of each half of a raw ECDSA signature.
ALG_SCHEMES: dict[str, SignatureScheme] = {
    "ES256": SignatureScheme.ECDSA_SHA256,
    "ES384": SignatureScheme.ECDSA_SHA384,
    "RS256": SignatureScheme.RSA_PKCS1V15_SHA256,
}
_ECDSA_SIZES = {"ES256": 32, "ES384": 48}
_CURVE_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384"}


class JwsError(ValueError):
    """A compact JWS that could not be parsed or verified (the message says why)."""


class NotCompact(JwsError):
    """Not three dot-separated parts."""


class BadHeader(JwsError):
    """The protected header is not base64url JSON."""


class HeaderNotObject(JwsError):
    """The protected header is JSON but not an object."""


class BadSignature(JwsError):
    """python-jose refused the signature for the given key and alg."""


class BadPayload(JwsError):
    """The verified payload is not JSON."""


class PayloadNotObject(JwsError):
    """The verified payload is JSON but not an object."""


class UnsupportedKey(JwsError):
    """No JWS alg is accepted for this public key."""


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (raises ``ValueError``/``binascii.Error``)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value: Mapping[str, Any]) -> bytes:
    """JSON with no spaces, keys in insertion order, UTF-8 (the OIDC token encoding)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def der_to_raw(signature: bytes, size: int) -> bytes:
    """DER ``SEQUENCE {r, s}`` → ``r || s`` with each half ``size`` bytes."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def alg_for_key(public_key: object) -> str:
    """The one JWS alg accepted for a public key (ES256 for P-256, ES384 for P-384, RS256 for
    RSA of at least 2048 bits); :class:`UnsupportedKey` otherwise."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _CURVE_ALGS.get(public_key.curve.name)
        if alg is not None:
            return alg
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return "RS256"
    raise UnsupportedKey("unsupported signing key type")


def sign_raw(keystore: KeyStore, key: KeyRefOrId, alg: str, data: bytes) -> bytes:
    """Sign ``data`` with a key-store key in the JOSE/COSE signature format for ``alg`` (raw
    ``r || s`` for ECDSA)."""
    signature = keystore.sign(key, data, ALG_SCHEMES[alg])
    size = _ECDSA_SIZES.get(alg)
    return der_to_raw(signature, size) if size else signature


def sign_compact(
    keystore: KeyStore,
    key: KeyRefOrId,
    header: Mapping[str, Any],
    payload: Mapping[str, Any],
    *,
    encode: Callable[[Mapping[str, Any]], bytes] = compact_json,
) -> str:
    """``payload`` as a compact JWS under ``header`` (which names the ``alg``), signed by a
    key-store key; ``encode`` serialises header and payload (default :func:`compact_json`)."""
    signing_input = f"{b64url(encode(header))}.{b64url(encode(payload))}"
    signature = sign_raw(keystore, key, str(header["alg"]), signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def _segment(text: str, bad: type[JwsError], not_object: type[JwsError]) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(text))
    except ValueError as exc:  # binascii.Error, UnicodeError and JSONDecodeError are ValueErrors
        raise bad(str(exc)) from None
    if not isinstance(value, dict):
        raise not_object("not a JSON object")
    return value


def _parts(token: str) -> list[str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise NotCompact("not a compact JWS")
    return parts


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, NOT verified (only to pick a key or read ``x5c``)."""
    return _segment(_parts(token)[0], BadHeader, HeaderNotObject)


def unverified_payload(token: str) -> dict[str, Any]:
    """The JSON payload of a compact JWS, NOT verified: for our own stored tokens (already
    verified when made) or to say what a failed token claimed."""
    return _segment(_parts(token)[1], BadPayload, PayloadNotObject)


def construct_key(public_jwk: Mapping[str, Any]) -> Any:
    """A python-jose key object for a public JWK with its ``alg`` (cached by the caller)."""
    return jose_jwk.construct(dict(public_jwk), public_jwk["alg"])


def verify(token: str, key: Any, alg: str) -> bytes:
    """Verify the JWS with exactly ``key`` and ``alg``; return the payload bytes.

    :class:`BadSignature` when python-jose refuses it (other ``ValueError`` from python-jose,
    e.g. a key that does not fit, pass through)."""
    try:
        payload: bytes = jose_jws.verify(token, key, algorithms=[alg])
    except JOSEError as exc:
        raise BadSignature(str(exc)) from None
    return payload


def parse_payload(payload: bytes) -> dict[str, Any]:
    """A verified payload as a JSON object (:class:`BadPayload`, :class:`PayloadNotObject`)."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise BadPayload(str(exc)) from None
    if not isinstance(value, dict):
        raise PayloadNotObject("not a JSON object")
    return value


def verify_json(token: str, key: Any, alg: str) -> dict[str, Any]:
    """:func:`verify`, then :func:`parse_payload`."""
    return parse_payload(verify(token, key, alg))
