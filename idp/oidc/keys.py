"""OIDC signing keys: one active ES256 and one active RS256 key in the key store, rotated with
overlap.

Rotation makes a new key active and retires the old one; the retired key stays in JWKS (and
keeps verifying) until ``publish_until`` = retirement + the longest lifetime of a token it may
have signed + clock skew, so no relying party ever sees a valid token whose key vanished.
Each process caches the key set for a few seconds; an unknown ``kid`` triggers one reload.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select, text

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.lease import Fence
from govtrust.principal import SYSTEM, Principal
from hsm import KeyAlgorithm, KeyStore, jws
from hsm.jws import b64url, construct_key
from idp.oidc.errors import InvalidToken
from idp.oidc.models import OidcSigningKeyRow

SUPPORTED_ALGS = ("ES256", "RS256")
KEY_ALGORITHM_FOR_ALG = {"ES256": KeyAlgorithm.EC_P256, "RS256": KeyAlgorithm.RSA_2048}
_PG_KEYS_LOCK = 0x6F6964_C0DE
CACHE_SECONDS = 5.0


def sign_jwt(
    keystore: KeyStore,
    keystore_key_id: str,
    *,
    alg: str,
    kid: str,
    claims: dict[str, Any],
    typ: str = "JWT",
) -> str:
    """Sign ``claims`` as a compact JWS with a key-store key (:func:`hsm.jws.sign_compact`)."""
    return jws.sign_compact(keystore, keystore_key_id, {"alg": alg, "kid": kid, "typ": typ}, claims)


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified (only to pick our key by ``kid``)."""
    try:
        return jws.unverified_header(token)
    except jws.NotCompact:
        raise InvalidToken("not a compact JWS") from None
    except jws.JwsError:
        raise InvalidToken("malformed JOSE header") from None


def verify_signature(token: str, key: Any, alg: str) -> dict[str, Any]:
    """Verify the JWS with exactly ``key`` and ``alg``; return the claims (not yet checked)."""
    if alg not in SUPPORTED_ALGS:
        raise InvalidToken("unsupported algorithm")
    try:
        return jws.verify_json(token, key, alg)
    except jws.PayloadNotObject:
        raise InvalidToken("claims are not a JSON object") from None
    except ValueError:  # every JwsError, and what python-jose raises for a key that cannot fit
        raise InvalidToken("signature verification failed") from None


@dataclass(frozen=True)
class SigningKey:
    """A published key: its ``kid``, algorithm, key-store id, JWK and python-jose verifier."""

    kid: str
    alg: str
    keystore_key_id: str
    status: str
    jwk: dict[str, Any]
    verifier: Any


def public_jwk(der_spki: bytes, *, kid: str, alg: str) -> dict[str, Any]:
    """The public JWK (RFC 7517) of a DER SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key = load_der_public_key(der_spki)
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
            "kid": kid,
            "alg": alg,
            "use": "sig",
        }
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        n = rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big")
        e = rsa_numbers.e.to_bytes((rsa_numbers.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "n": b64url(n), "e": b64url(e), "kid": kid, "alg": alg, "use": "sig"}
    raise ValueError("unsupported key type for JWS")


class SigningKeys:
    """The provider's signing keys (database rows + key-store keys) with a short-lived cache."""

    def __init__(
        self,
        db: Database,
        keystore: KeyStore,
        *,
        overlap: timedelta,
        clock: Any = None,
    ) -> None:
        self.db = db
        self.keystore = keystore
        self.overlap = overlap
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, SigningKey]] | None = None

    def now(self) -> datetime:
        """The clock (UTC)."""
        result: datetime = self._clock()
        return result

    # --- management ---------------------------------------------------------------------------

    def _lock_pg(self, session: Any) -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_KEYS_LOCK})

    def ensure(self) -> None:
        """Make sure one active key exists per supported algorithm (first start)."""
        with self.db.read() as session:
            present = set(
                session.scalars(
                    select(OidcSigningKeyRow.alg).where(OidcSigningKeyRow.status == "active")
                )
            )
        for alg in SUPPORTED_ALGS:
            if alg not in present:
                self._install(alg, SYSTEM, only_if_missing=True)
        self.invalidate()

    def rotate(self, alg: str, principal: Principal = SYSTEM) -> str:
        """Make a new key active for ``alg``; the old one stays published for the overlap."""
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported alg {alg}")
        kid = self._install(alg, principal, only_if_missing=False)
        self.invalidate()
        return kid

    def _install(self, alg: str, principal: Principal, *, only_if_missing: bool) -> str:
        # The key store writes in its own transaction, so generate before taking the write lock.
        kid = secrets.token_urlsafe(12)
        ref = self.keystore.generate(f"oidc-{alg.lower()}-{kid}", KEY_ALGORITHM_FOR_ALG[alg])
        now = self.now()
        used = True
        with self.db.transaction() as session:
            self._lock_pg(session)
            active = list(
                session.scalars(
                    select(OidcSigningKeyRow)
                    .where(OidcSigningKeyRow.alg == alg)
                    .where(OidcSigningKeyRow.status == "active")
                )
            )
            if active and only_if_missing:
                used = False
                kid = active[0].kid
            else:
                for row in active:
                    row.status = "retired"
                    row.retired_at = now
                    row.publish_until = now + self.overlap
                session.add(
                    OidcSigningKeyRow(
                        kid=kid,
                        keystore_key_id=ref.key_id,
                        alg=alg,
                        status="active",
                        public_jwk=json.dumps(public_jwk(ref.public_key_der, kid=kid, alg=alg)),
                        created_at=now,
                        retired_at=None,
                        publish_until=None,
                    )
                )
                audit.append(
                    session,
                    actor=principal.actor,
                    action="oidc.key.rotate" if active else "oidc.key.create",
                    target=f"oidc-key:{kid}",
                    details={"alg": alg, "retired": [r.kid for r in active]},
                )
        if not used:
            self.keystore.destroy(ref)
        return kid

    def prune(self, principal: Principal = SYSTEM, fence: Fence | None = None) -> list[str]:
        """Destroy retired keys whose overlap has ended; returns their kids (the expiry sweep,
        a cluster job: ``fence`` is its lease, checked in the transaction that marks them)."""
        now = self.now()
        with self.db.transaction() as session:
            if fence is not None:
                fence.check(session)
            rows = list(
                session.scalars(
                    select(OidcSigningKeyRow)
                    .where(OidcSigningKeyRow.status == "retired")
                    .where(OidcSigningKeyRow.publish_until <= now)
                )
            )
            for row in rows:
                row.status = "destroyed"
                audit.append(
                    session,
                    actor=principal.actor,
                    action="oidc.key.destroy",
                    target=f"oidc-key:{row.kid}",
                )
            gone = [(r.kid, r.keystore_key_id) for r in rows]
        for _kid, key_id in gone:
            self.keystore.destroy(key_id)
        self.invalidate()
        return [kid for kid, _ in gone]

    # --- reading ------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget the cached key set."""
        with self._lock:
            self._cached = None

    def _load(self) -> dict[str, SigningKey]:
        now = self.now()
        with self.db.read() as session:
            rows = list(
                session.scalars(
                    select(OidcSigningKeyRow).where(OidcSigningKeyRow.status != "destroyed")
                )
            )
        keys: dict[str, SigningKey] = {}
        for row in rows:
            if row.publish_until is not None and as_utc(row.publish_until) <= now:
                continue
            jwk = json.loads(row.public_jwk)
            keys[row.kid] = SigningKey(
                row.kid, row.alg, row.keystore_key_id, row.status, jwk, construct_key(jwk)
            )
        return keys

    def published(self, *, refresh: bool = False) -> dict[str, SigningKey]:
        """Every key in JWKS, by kid (cached for a few seconds)."""
        with self._lock:
            cached = self._cached
        if not refresh and cached is not None and cached[0] > time.monotonic():
            return cached[1]
        keys = self._load()
        with self._lock:
            self._cached = (time.monotonic() + CACHE_SECONDS, keys)
        return keys

    def lookup(self, kid: str) -> SigningKey | None:
        """The published key ``kid`` (reloading once when it is unknown)."""
        key = self.published().get(kid)
        if key is None:
            key = self.published(refresh=True).get(kid)
        return key

    def active(self, alg: str) -> SigningKey:
        """The key that signs new tokens with ``alg``."""
        for key in self.published().values():
            if key.alg == alg and key.status == "active":
                return key
        for key in self.published(refresh=True).values():
            if key.alg == alg and key.status == "active":
                return key
        raise RuntimeError(f"no active {alg} signing key")

    def jwks(self) -> dict[str, Any]:
        """The JWK Set document."""
        return {"keys": [k.jwk for k in self.published().values()]}
