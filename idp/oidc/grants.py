"""The token endpoint of the OpenID Connect provider: client authentication and the grants.

:class:`TokenGrants` holds the token endpoint (RFC 6749 §3.2) and what it needs: client
authentication (``client_secret_basic``/``_post``, ``none``, ``private_key_jwt``), the
``authorization_code`` grant (bound to the code's ``redirect_uri`` and PKCE verifier; a reused
code revokes its grant), the ``refresh_token`` grant (rotation on every use; a rotated token
presented again revokes its whole family, unless the reuse interval answers it again:
:mod:`idp.oidc.reuse`), the stateless ``client_credentials`` grant, and the
minting of access, ID and refresh tokens. :class:`idp.oidc.provider.Provider` inherits it; the
attributes it uses are the provider's (declared below for the type checker).
"""

# ruff: noqa: S105 - token type names are not passwords
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.fastsql import FastSql, WriteBusy
from hsm import KeyStore
from hsm.jws import b64url
from idp.oidc.clients import Client, ClientRegistry, hash_secret
from idp.oidc.errors import InvalidToken, OAuthError
from idp.oidc.keys import SigningKeys, sign_jwt, unverified_header, verify_signature
from idp.oidc.models import (
    OidcAssertionJtiRow,
    OidcAuthCodeRow,
    OidcGrantRow,
    OidcRefreshTokenRow,
)
from idp.oidc.reuse import REANSWER_TRIES, SQL_REANSWERABLE, interval_start
from idp.oidc.rotation import PendingRotation, RotationCommitter
from idp.oidc.tokens import ACCESS_TOKEN_TYP

if TYPE_CHECKING:
    from idp.oidc.config import ProviderConfig

# private_key_jwt assertion algorithms, as discovery lists them: only what python-jose verifies
# (3.5 has no PS256, so listing it would invite clients whose every assertion is refused).
ASSERTION_ALGORITHMS = ("ES256", "RS256")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

_RT = cast(Table, OidcRefreshTokenRow.__table__)
# Statements of the ORM-side refresh paths, built once (SQLAlchemy memoises their compilation).
_SEEN_REFRESH = select(_RT.c.grant_id, _RT.c.used_at, _RT.c.revoked_at).where(
    _RT.c.token_hash == bindparam("h"), _RT.c.client_id == bindparam("cid")
)
_INSERT_REFRESH = insert(_RT)


class WriteWouldBlock(Exception):
    """A call made with ``wait=False`` reached a write that would wait for a lock.

    Nothing has been written; ``resume()`` finishes the call, waiting (run it off the event loop).
    """

    def __init__(self, resume: Callable[[], dict[str, Any]]) -> None:
        super().__init__("the write would wait")
        self.resume = resume


# A refresh token that may be used now, with its grant's claims (read before the write).
_SQL_PEEK_REFRESH = (
    "SELECT g.id, r.scope, g.claims_sub, g.auth_time, g.acr, g.amr, g.sid"
    " FROM oidc_refresh_tokens r JOIN oidc_grants g ON g.id = r.grant_id"
    " WHERE r.token_hash = :h AND r.client_id = :cid AND r.used_at IS NULL"
    " AND r.revoked_at IS NULL AND r.expires_at > :at AND g.revoked_at IS NULL"
)
# A rotated (used) token of this client whose family is not revoked yet: a reuse to act on.
_SQL_REUSED_REFRESH = (
    "SELECT 1 FROM oidc_refresh_tokens WHERE token_hash = :h AND client_id = :cid"
    " AND used_at IS NOT NULL AND revoked_at IS NULL"
)


_MAKING = threading.Lock()  # makes each provider's rotation committer once


class TokenGrants:
    """The token endpoint and client authentication, mixed into the provider."""

    db: Database
    config: ProviderConfig
    keystore: KeyStore
    clients: ClientRegistry
    keys: SigningKeys
    fast: FastSql
    now: Callable[[], datetime]
    _write_lock: Any
    ensure_keys: Callable[[], None]

    def authenticate_client(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, *, endpoint: str
    ) -> Client:
        """Authenticate the client of a token/introspection/revocation request."""
        assertion_type = form.get("client_assertion_type", "")
        if basic is not None:
            client_id, secret, method = basic[0], basic[1], "client_secret_basic"
        elif assertion_type:
            if assertion_type != JWT_BEARER:
                raise OAuthError("invalid_client", "unsupported client_assertion_type", status=401)
            return self._private_key_jwt(form, endpoint)
        elif "client_secret" in form:
            client_id, secret, method = (
                form.get("client_id", ""),
                form["client_secret"],
                ("client_secret_post"),
            )
        else:
            client_id, secret, method = form.get("client_id", ""), "", "none"
        client = self.clients.cached(client_id) if client_id else None
        if client is None or client.token_endpoint_auth_method != method:
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        if method != "none" and not client.check_secret(secret):
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        if "client_id" in form and form["client_id"] != client.client_id:
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        return client

    def _private_key_jwt(self, form: Mapping[str, str], endpoint: str) -> Client:
        from jose import jwk as jose_jwk

        fail = OAuthError("invalid_client", "client authentication failed", status=401)
        assertion = form.get("client_assertion", "")
        try:
            header = unverified_header(assertion)
            unverified = json.loads(
                base64.urlsafe_b64decode(assertion.split(".")[1] + "==").decode()
            )
        except (InvalidToken, ValueError, IndexError):
            raise fail from None
        client_id = unverified.get("iss") if isinstance(unverified, dict) else None
        client = self.clients.find(client_id) if isinstance(client_id, str) else None
        if client is None or client.token_endpoint_auth_method != "private_key_jwt":
            raise fail
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise fail
        keys = json.loads(client.jwks).get("keys", [])
        kid = header.get("kid")
        candidates = [k for k in keys if kid is None or k.get("kid") == kid]
        claims: dict[str, Any] | None = None
        for key in candidates:
            if key.get("alg") not in (None, alg):
                continue
            try:
                claims = verify_signature(assertion, jose_jwk.construct(key, alg), alg)
                break
            except Exception:  # noqa: BLE001, S112 - a key that cannot verify is not this key
                continue
        if claims is None:
            raise fail
        now = self.now().timestamp()
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if (
            claims.get("iss") != client.client_id
            or claims.get("sub") != client.client_id
            or not any(a in {endpoint, self.config.issuer} for a in auds)
            or not isinstance(claims.get("exp"), int | float)
            or claims["exp"] < now - self.config.clock_skew
            or claims["exp"] > now + 600
            or not isinstance(claims.get("jti"), str)
        ):
            raise fail
        jti = f"{client.client_id}:{claims['jti']}"[:300]
        with self.db.transaction() as tx:
            tx.execute(
                delete(OidcAssertionJtiRow).where(OidcAssertionJtiRow.expires_at < self.now())
            )
            if tx.get(OidcAssertionJtiRow, jti) is not None:
                replay = True
            else:
                replay = False
                tx.add(
                    OidcAssertionJtiRow(
                        jti=jti,
                        expires_at=datetime.fromtimestamp(claims["exp"], UTC)
                        + timedelta(seconds=self.config.clock_skew),
                    )
                )
        if replay:
            raise fail
        return client

    # ============================================================================ token endpoint

    def token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, *, wait: bool = True
    ) -> dict[str, Any]:
        """The token endpoint (RFC 6749 §3.2).

        With ``wait=False`` (an event-loop caller on SQLite) a refresh whose write would wait for
        SQLite's write lock (taken by a writer outside the token gate) raises
        :class:`WriteWouldBlock` instead, before writing anything.
        """
        self.ensure_keys()
        client = self.authenticate_client(form, basic, endpoint=self.config.endpoint("/oidc/token"))
        grant_type = form.get("grant_type", "")
        if grant_type not in {"authorization_code", "refresh_token", "client_credentials"}:
            raise OAuthError("unsupported_grant_type", "unsupported grant_type")
        if grant_type not in client.grant_types:
            raise OAuthError("unauthorized_client", "the client may not use this grant type")
        if grant_type == "authorization_code":
            return self._code_grant(client, form)
        if grant_type == "refresh_token":
            return self._refresh_grant(client, form, wait=wait)
        return self._client_credentials(client, form)

    def _revoke_grant(self, tx: Any, grant_id: str, reason: str, now: datetime) -> None:
        tx.execute(
            update(OidcGrantRow)
            .where(OidcGrantRow.id == grant_id)
            .where(OidcGrantRow.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )
        tx.execute(
            update(OidcRefreshTokenRow)
            .where(OidcRefreshTokenRow.grant_id == grant_id)
            .where(OidcRefreshTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def _code_grant(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        now = self.now()
        failure: OAuthError | None = None
        with self._write_lock, self.db.transaction() as tx:
            row = tx.get(OidcAuthCodeRow, hash_secret(code)) if code else None
            grant = tx.get(OidcGrantRow, row.grant_id) if row is not None else None
            if row is None or grant is None or row.client_id != client.client_id:
                failure = OAuthError("invalid_grant", "the code is invalid")
            elif row.used_at is not None:
                # Reuse: the code leaked or was replayed; kill every token it produced.
                self._revoke_grant(tx, row.grant_id, "code_reuse", now)
                audit.append(
                    tx,
                    actor=f"client:{client.client_id}",
                    action="oidc.code.reuse",
                    target=f"oidc-grant:{row.grant_id}",
                    outcome="denied",
                )
                failure = OAuthError("invalid_grant", "the code is invalid")
            elif as_utc(row.expires_at) <= now or grant.revoked_at is not None:
                failure = OAuthError("invalid_grant", "the code is invalid")
            elif form.get("redirect_uri", "") != row.redirect_uri:
                failure = OAuthError("invalid_grant", "redirect_uri does not match")
            elif not _pkce_ok(row.code_challenge, form.get("code_verifier", "")):
                failure = OAuthError("invalid_grant", "PKCE verification failed")
            else:
                row.used_at = now
                result = self._mint(tx, client, grant, now, nonce=row.nonce)
                audit.append(
                    tx,
                    actor=f"client:{client.client_id}",
                    action="oidc.token.code",
                    target=f"oidc-grant:{grant.id}",
                )
        if failure is not None:
            raise failure
        return result

    def _refresh_grant(
        self, client: Client, form: Mapping[str, str], *, wait: bool = True
    ) -> dict[str, Any]:
        """Rotate a refresh token: read it, mint the new tokens, then claim it in one short write.

        The signatures are made before the write transaction, so SQLite's single writer is held
        only for the claim and the insert; the claim re-checks everything the read saw (unused,
        unrevoked, unexpired, live grant), so a token presented twice at once is minted for at
        most once, and the loser is treated as reuse (which the reuse interval may answer).
        """
        token = form.get("refresh_token", "")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        digest = hash_secret(token)
        now = self.now()
        asked = form.get("scope", "").split()
        fast = self.fast
        params = {"h": digest, "cid": client.client_id, "at": fast.ts(now)}
        with fast.read() as cur:
            cur.execute(fast.sql(_SQL_PEEK_REFRESH), params)
            found = cur.fetchone()
        if found is None:
            return self._refresh_failed(client, digest, now, asked, wait=wait)
        return self._rotate(client, digest, now, found, asked, wait=wait)

    def _rotate(
        self,
        client: Client,
        digest: bytes,
        now: datetime,
        found: Any,
        asked: list[str],
        *,
        wait: bool,
        successor: bytes | None = None,
        since: datetime | None = None,
        tries: int = REANSWER_TRIES,
    ) -> dict[str, Any]:
        """Mint for the token ``digest`` (``found``: its grant id, scope and grant claims, as
        :data:`_SQL_PEEK_REFRESH` reads them) and write the rotation: claiming the token, or,
        given its unused ``successor``, superseding that one (a re-answer within the reuse
        interval, ``since`` its start; idp/oidc/reuse.py)."""
        fast = self.fast
        held = found[1].split()
        if asked and not set(asked) <= set(held):
            raise OAuthError("invalid_scope", "scope exceeds the original grant")
        grant = SimpleNamespace(
            id=found[0],
            claims_sub=found[2],
            auth_time=fast.from_db(found[3]),
            acr=found[4],
            amr=found[5],
            sid=found[6],
            scope=found[1],
        )
        scope = [s for s in held if s in asked] if asked else held
        minted: list[dict[str, Any]] = []
        result = self._mint(
            None, client, grant, now, nonce="", scope=scope, store_refresh=minted.append
        )

        details: dict[str, Any] = {
            "rotated": digest.hex(),
            "issued": [row["token_hash"].hex() for row in minted],
        }
        params = {"h": digest, "cid": client.client_id, "at": fast.ts(now), "used": fast.ts(now)}
        if successor is not None:
            assert since is not None
            details["superseded"] = successor.hex()
            params.update(s=successor, since=fast.ts(since))
        entry = audit.Entry(
            f"client:{client.client_id}",
            "oidc.token.refresh",
            f"oidc-grant:{grant.id}",
            audit.canonical_json(details).decode(),
        )
        rows = [
            {
                **row,
                "created_at": fast.ts(row["created_at"]),
                "expires_at": fast.ts(row["expires_at"]),
                "rotated_from": digest,
            }
            for row in minted
        ]

        def claim(wait: bool) -> dict[str, Any]:
            # Claimed, minted and audited in one transaction, shared with the rotations of
            # concurrent requests (idp/oidc/rotation.py); answered once it committed.
            item = PendingRotation(
                params=params,
                minted=rows,
                entry=entry,
                now=now,
                wait=wait,
                supersede=successor is not None,
            )
            try:
                claimed = self._rotations().rotate(item)
            except WriteBusy:
                raise WriteWouldBlock(lambda: claim(True)) from None
            if not claimed:
                # Taken by a concurrent presentation (of the token, or of its predecessor
                # within the reuse interval): a reuse, or a re-answer if it still qualifies.
                return self._refresh_failed(client, digest, now, asked, wait=wait, tries=tries)
            return result

        return claim(wait)

    def _rotations(self) -> RotationCommitter:
        """The provider's rotation committer (made on first use)."""
        committer: RotationCommitter | None = getattr(self, "_rotation_committer", None)
        if committer is None:
            with _MAKING:
                committer = getattr(self, "_rotation_committer", None)
                if committer is None:
                    committer = RotationCommitter(self.db, self.fast, self._write_lock)
                    self._rotation_committer = committer
        return committer

    def _refresh_failed(
        self,
        client: Client,
        digest: bytes,
        now: datetime,
        asked: list[str],
        *,
        wait: bool,
        tries: int = REANSWER_TRIES,
    ) -> dict[str, Any]:
        """After a refused refresh token: a rotated one presented again within the reuse
        interval, its successor unused, is answered again (idp/oidc/reuse.py); any other reused
        (rotated) one revokes its whole family. Raises ``invalid_grant`` unless answered.

        Unknown, expired and already revoked tokens are only read: a client sending bad tokens
        never causes a write (the revocation happens once per family).
        """
        fast = self.fast
        cid = client.client_id
        with fast.read() as cur:
            cur.execute(fast.sql(_SQL_REUSED_REFRESH), {"h": digest, "cid": cid})
            reused = cur.fetchone() is not None
        interval = self.config.refresh_reuse_interval
        if reused and interval > 0 and tries > 0:
            since = interval_start(now, interval)
            with fast.read() as cur:
                cur.execute(
                    fast.sql(SQL_REANSWERABLE),
                    {"h": digest, "cid": cid, "at": fast.ts(now), "since": fast.ts(since)},
                )
                again = cur.fetchone()
            if again is not None:
                return self._rotate(
                    client,
                    digest,
                    now,
                    again[1:],
                    asked,
                    wait=wait,
                    successor=bytes(again[0]),
                    since=since,
                    tries=tries - 1,
                )
        if reused:
            self._revoke_reused(client, digest, now)
        raise OAuthError("invalid_grant", "the refresh token is invalid")

    def _revoke_reused(self, client: Client, digest: bytes, now: datetime) -> None:
        """Revoke the family of the rotated token ``digest`` (re-checked under the write)."""
        with self._write_lock, self.db.transaction() as tx:
            seen = (
                tx.connection()
                .execute(_SEEN_REFRESH, {"h": digest, "cid": client.client_id})
                .first()
            )
            if seen is not None and seen.used_at is not None and seen.revoked_at is None:
                # A rotated token came back: stolen or replayed. Revoke the whole family.
                self._revoke_grant(tx, seen.grant_id, "refresh_reuse", now)
                audit.append(
                    tx,
                    actor=f"client:{client.client_id}",
                    action="oidc.refresh.reuse",
                    target=f"oidc-grant:{seen.grant_id}",
                    outcome="denied",
                )

    def _mint(
        self,
        tx: Any,
        client: Client,
        grant: Any,
        now: datetime,
        *,
        nonce: str,
        scope: list[str] | None = None,
        store_refresh: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        scopes = scope if scope is not None else grant.scope.split()
        auth_time = int(as_utc(grant.auth_time).timestamp())
        access = self._access_token(
            sub=grant.claims_sub,
            client_id=client.client_id,
            scopes=scopes,
            now=now,
            jti=f"{grant.id}.{secrets.token_urlsafe(12)}",
            extra={"auth_time": auth_time, "acr": grant.acr, "sid": grant.sid},
        )
        result: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl,
            "scope": " ".join(scopes),
        }
        if "openid" in scopes:
            result["id_token"] = self.id_token(client, grant, now, nonce=nonce, access_token=access)
        if "refresh_token" in client.grant_types:
            refresh = secrets.token_urlsafe(32)
            row = {
                "token_hash": hash_secret(refresh),
                "grant_id": grant.id,
                "client_id": client.client_id,
                "scope": " ".join(scopes),
                "created_at": now,
                "expires_at": now + timedelta(seconds=self.config.refresh_token_ttl),
            }
            if store_refresh is not None:
                store_refresh(row)
            else:
                tx.connection().execute(
                    _INSERT_REFRESH, {**row, "used_at": None, "revoked_at": None}
                )
            result["refresh_token"] = refresh
        return result

    def _access_token(
        self,
        *,
        sub: str,
        client_id: str,
        scopes: list[str],
        now: datetime,
        jti: str,
        extra: dict[str, Any] | None = None,
    ) -> str:
        key = self.keys.active("ES256")
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": sub,
            "aud": self.config.issuer,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": iat,
            "exp": iat + self.config.access_token_ttl,
            "jti": jti,
        }
        claims.update(extra or {})
        return sign_jwt(
            self.keystore,
            key.keystore_key_id,
            alg=key.alg,
            kid=key.kid,
            claims=claims,
            typ=ACCESS_TOKEN_TYP,
        )

    def id_token(
        self,
        client: Client,
        grant: Any,
        now: datetime,
        *,
        nonce: str,
        access_token: str = "",
    ) -> str:
        """An ID token for a grant (OIDC Core §2, §3.1.3.6 ``at_hash``)."""
        key = self.keys.active(client.id_token_signing_alg)
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": grant.claims_sub,
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": iat,
            "exp": iat + self.config.id_token_ttl,
            "auth_time": int(as_utc(grant.auth_time).timestamp()),
            "acr": grant.acr,
            "amr": grant.amr.split(),
            "sid": grant.sid,
        }
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["at_hash"] = b64url(digest[:16])
        return sign_jwt(self.keystore, key.keystore_key_id, alg=key.alg, kid=key.kid, claims=claims)

    def _client_credentials(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        requested = form.get("scope", "").split()
        not_oidc = [s for s in client.allowed_scopes if s not in {"openid", "offline_access"}]
        scopes = [s for s in requested if s in not_oidc] if requested else []
        now = self.now()
        token = self._access_token(
            sub=client.client_id,
            client_id=client.client_id,
            scopes=scopes,
            now=now,
            jti=secrets.token_urlsafe(16),
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl,
            "scope": " ".join(scopes),
        }


def _pkce_ok(challenge: str, verifier: str) -> bool:
    if not challenge:
        return not verifier
    if not 43 <= len(verifier) <= 128:
        return False
    computed = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    return hmac.compare_digest(computed, challenge)
