"""Bearer tokens at the resource side: validation, userinfo, introspection, revocation.

:meth:`TokenIntrospection.validate_access_token` checks one of our access tokens (signature and
claims by :class:`idp.oidc.tokens.TokenValidator`, then one query for revocation); userinfo
(OIDC Core §5.3), introspection (RFC 7662), revocation (RFC 7009) and the gRPC principal build on
it. :class:`TokenIntrospection` is mixed into :class:`idp.oidc.provider.Provider`; the attributes
it uses are the provider's (declared below for the type checker).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.fastsql import FastSql
from govtrust.principal import Principal
from idp.oidc.clients import Client, ClientRegistry, hash_secret
from idp.oidc.config import ProviderConfig
from idp.oidc.directory import IdentityInfo, RegistryDirectory
from idp.oidc.errors import InvalidToken, OAuthError
from idp.oidc.grant_state import GrantStateLookup, TokenState, grant_principal
from idp.oidc.keys import SigningKeys
from idp.oidc.models import OidcGrantRow, OidcRefreshTokenRow, OidcRevokedJtiRow
from idp.oidc.tokens import (
    AccessClaims,
    CheckedClaims,
    TokenRejected,
    TokenValidator,
    access_token_grant_id,
)

VERIFIED_CACHE_SIZE = 20_000

_SQL_VALIDATE = (
    "SELECT (SELECT count(*) FROM oidc_clients WHERE client_id = :cid),"
    " (SELECT count(*) FROM oidc_revoked_jti WHERE jti = :jti),"
    " (SELECT count(*) FROM oidc_grants WHERE id = :gid AND revoked_at IS NULL)"
)


@dataclass(frozen=True)
class TokenDetails:
    """What a business system learns about an active token (gRPC ``IntrospectToken``): its
    kind (``access_token`` or ``refresh_token``), its claims as RFC 7662 gives them, and from its
    grant the authentication methods, the identity (the acting person when one acts for a legal
    person, then ``acting_for`` is the legal person) and the client's local account id."""

    kind: str
    claims: dict[str, Any]
    amr: tuple[str, ...] = ()
    identity: IdentityInfo | None = None
    acting_for: IdentityInfo | None = None
    local_account_id: str = ""


@dataclass(frozen=True)
class TokenInfo:
    """A validated access token."""

    claims: dict[str, Any]
    grant_id: str | None
    client_id: str
    scopes: frozenset[str]


class TokenIntrospection:
    """Access-token validation and the endpoints built on it, mixed into the provider."""

    db: Database
    config: ProviderConfig
    clients: ClientRegistry
    directory: RegistryDirectory
    keys: SigningKeys
    tokens: TokenValidator
    fast: FastSql
    now: Callable[[], datetime]
    _verified: dict[str, tuple[dict[str, Any], dict[str, Any]]]
    _revoke_grant: Callable[[Any, str, str, datetime], None]

    def _verify_our_jwt(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            return self.tokens.signed(token)
        except TokenRejected as rejected:
            raise InvalidToken(rejected.detail) from None

    def validate_access_token(self, token: str) -> TokenInfo:
        """Verify one of our access tokens: signature, claims, and that nothing revoked it.

        Signature and claims are :class:`TokenValidator`'s (its faults become
        :class:`InvalidToken`). A token whose signature verified once is remembered (by its exact
        text) for the rest of its life, so a resource server introspecting the same token again
        skips the ECDSA verification; claims, expiry and revocation are checked every time.
        """
        cached = self._verified.get(token)
        if cached is not None and self.keys.lookup(str(cached[0].get("kid"))) is None:
            self._verified.pop(token, None)  # its key has been retired and destroyed since
            raise InvalidToken("unknown signing key")
        if cached is None:
            cached = self._verify_our_jwt(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = cached
        try:
            checked = self.tokens.access_claims(*cached, self.now().timestamp())
        except TokenRejected as rejected:
            raise InvalidToken(rejected.detail) from None
        if self._access_revoked(checked):
            raise InvalidToken("revoked")
        return TokenInfo(checked.claims, checked.grant_id, checked.client_id, checked.scopes)

    def _access_revoked(self, checked: AccessClaims) -> bool:
        """Whether the token store refuses a checked access token: its client is gone, its
        ``jti`` is revoked, or its grant is revoked or gone (one query)."""
        grant_id = checked.grant_id
        fast = self.fast
        with fast.read() as cur:
            cur.execute(
                fast.sql(_SQL_VALIDATE),
                {"cid": checked.client_id, "jti": checked.jti, "gid": grant_id or ""},
            )
            found = cur.fetchone()
        return bool(not found[0] or found[1] or (grant_id is not None and not found[2]))

    def token_state(
        self, header: dict[str, Any], checked: CheckedClaims, grants: GrantStateLookup
    ) -> TokenState:
        """Revocation and subject of a token whose signature verified (VerifyIdToken).

        An access token is revoked when :meth:`validate_access_token` would refuse it as
        revoked, or when the grant its ``jti`` names is revoked or gone; a client_credentials
        token has no person behind it. An ID token is revoked when the grant of its session
        (``sid``) for its client (``azp``, else the first audience) is.
        """
        claims = checked.claims
        if checked.access:
            try:
                access = self.tokens.access_claims(header, claims, self.now().timestamp())
            except TokenRejected:
                revoked = False  # refused for its claims, not for revocation
            else:
                revoked = self._access_revoked(access)
            grant_id = access_token_grant_id(claims.get("jti"))
            if grant_id is None:
                return TokenState(revoked, None, None)
            grant = grants.by_id(grant_id)
            if grant is None:
                return TokenState(True, None, None)
            return TokenState(revoked or grant.revoked, grant.identity_id, grant.acting_person_id)
        sid = claims.get("sid")
        audience = checked.audience
        client = claims.get("azp") or (audience[0] if audience else "")
        if not isinstance(sid, str) or not isinstance(client, str):
            return TokenState(False, None, None)
        grant = grants.by_session(sid, client)
        if grant is None:
            return TokenState(False, None, None)
        return TokenState(grant.revoked, grant.identity_id, grant.acting_person_id)

    def verify_id_token_hint(self, token: str) -> dict[str, Any]:
        """An ID token we issued (expired is fine: it is only a hint for logout)."""
        header, claims = self._verify_our_jwt(token)
        if header.get("typ") not in (None, "JWT") or claims.get("iss") != self.config.issuer:
            raise InvalidToken("not our ID token")
        if not isinstance(claims.get("aud"), str | list) or not isinstance(claims.get("sub"), str):
            raise InvalidToken("malformed ID token")
        return claims

    def userinfo(self, token: str) -> dict[str, Any]:
        """Claims for a user access token carrying the ``openid`` scope (OIDC Core §5.3)."""
        try:
            info = self.validate_access_token(token)
        except InvalidToken:
            raise OAuthError("invalid_token", "the access token is invalid", status=401) from None
        if info.grant_id is None or "openid" not in info.scopes:
            raise OAuthError("insufficient_scope", "the token has no openid scope", status=403)
        with self.db.read() as session:
            grant = session.get(OidcGrantRow, info.grant_id)
        client = self.clients.find(info.client_id)
        if grant is None or client is None:
            raise OAuthError("invalid_token", "the access token is invalid", status=401)
        ident = self.directory.identity(grant.identity_id)
        if ident is None or ident.status != "active":
            raise OAuthError("invalid_token", "the access token is invalid", status=401)
        claims = self.directory.claims(
            grant.identity_id,
            info.scopes,
            acting_person_id=grant.acting_person_id,
            allow_identity="identity" in client.allowed_scopes,
            system_id=client.system_id if client.connection_mode == "mapped" else "",
        )
        claims["sub"] = grant.claims_sub
        return claims

    def introspect(self, client: Client, token: str) -> dict[str, Any]:
        """RFC 7662: whether the token is active, and its claims when it is."""
        if token.count(".") == 2:
            try:
                info = self.validate_access_token(token)
            except InvalidToken:
                return {"active": False}
            claims = info.claims
            out: dict[str, Any] = {
                "active": True,
                "token_type": "access_token",
                "client_id": info.client_id,
                "scope": claims.get("scope", ""),
                "sub": claims["sub"],
                "iss": claims["iss"],
                "aud": claims["aud"],
                "iat": claims.get("iat"),
                "exp": claims["exp"],
                "jti": claims["jti"],
            }
            for name in ("auth_time", "acr", "sid"):
                if name in claims:
                    out[name] = claims[name]
            return out
        with self.db.read() as session:
            row = session.get(OidcRefreshTokenRow, hash_secret(token))
            grant = session.get(OidcGrantRow, row.grant_id) if row is not None else None
        if (
            row is None
            or grant is None
            or row.client_id != client.client_id
            or row.used_at is not None
            or row.revoked_at is not None
            or grant.revoked_at is not None
            or as_utc(row.expires_at) <= self.now()
            or self.clients.find(row.client_id) is None
        ):
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": row.client_id,
            "scope": row.scope,
            "sub": grant.claims_sub,
            "iss": self.config.issuer,
            "iat": int(as_utc(row.created_at).timestamp()),
            "exp": int(as_utc(row.expires_at).timestamp()),
            "auth_time": int(as_utc(grant.auth_time).timestamp()),
            "acr": grant.acr,
            "sid": grant.sid,
        }

    def token_details(self, token: str) -> TokenDetails | None:
        """An access token (JWT) or refresh token as :class:`TokenDetails`; None when it is
        not active (a refresh token is judged for the client it was issued to)."""
        grant: OidcGrantRow | None = None
        if token.count(".") == 2:
            try:
                info = self.validate_access_token(token)
            except InvalidToken:
                return None
            claims, kind = info.claims, "access_token"
            if info.grant_id:
                with self.db.read() as session:
                    grant = session.get(OidcGrantRow, info.grant_id)
        else:
            with self.db.read() as session:
                row = session.get(OidcRefreshTokenRow, hash_secret(token))
                grant = session.get(OidcGrantRow, row.grant_id) if row is not None else None
            if row is None or grant is None:
                return None
            client = self.clients.find(row.client_id)
            if client is None:
                return None
            claims, kind = self.introspect(client, token), "refresh_token"
            if not claims.get("active"):
                return None
        if grant is None:
            return TokenDetails(kind, claims)
        identity = self.directory.identity(grant.identity_id)
        acting_for = None
        if grant.acting_person_id and identity is not None and identity.kind == "legal_person":
            acting = self.directory.identity(grant.acting_person_id)
            if acting is not None:
                identity, acting_for = acting, identity
        local = ""
        client = self.clients.find(grant.client_id)
        if client is not None and client.connection_mode == "mapped":
            mapped = self.directory.claims(
                grant.identity_id, frozenset(), system_id=client.system_id
            ).get("local_account_id")
            local = str(mapped) if mapped else ""
        return TokenDetails(kind, claims, tuple(grant.amr.split()), identity, acting_for, local)

    def revoke(self, client: Client, token: str) -> None:
        """RFC 7009: revoke a refresh token (and its family) or an access token; always OK."""
        now = self.now()
        if token.count(".") == 2:
            try:
                info = self.validate_access_token(token)
            except InvalidToken:
                return
            if info.client_id != client.client_id:
                return
            exp = datetime.fromtimestamp(info.claims["exp"], UTC)
            with self.db.transaction() as tx:
                if tx.get(OidcRevokedJtiRow, info.claims["jti"]) is None:
                    tx.add(OidcRevokedJtiRow(jti=info.claims["jti"], expires_at=exp))
                tx.execute(delete(OidcRevokedJtiRow).where(OidcRevokedJtiRow.expires_at < now))
                audit.append(
                    tx,
                    actor=f"client:{client.client_id}",
                    action="oidc.token.revoke",
                    target=f"oidc-jti:{info.claims['jti']}",
                )
            return
        with self.db.transaction() as tx:
            row = tx.get(OidcRefreshTokenRow, hash_secret(token))
            if row is None or row.client_id != client.client_id:
                return
            self._revoke_grant(tx, row.grant_id, "revoked", now)
            audit.append(
                tx,
                actor=f"client:{client.client_id}",
                action="oidc.token.revoke",
                target=f"oidc-grant:{row.grant_id}",
            )

    def principal_for_token(self, token: str) -> Principal:
        """The gRPC principal of a bearer access token (``Unauthenticated`` when invalid)."""
        from govtrust.errors import Unauthenticated

        try:
            info = self.validate_access_token(token)
        except InvalidToken:
            raise Unauthenticated("the bearer token is not valid") from None
        if info.grant_id is None:
            client = self.clients.find(info.client_id)
            roles = frozenset(client.roles) if client else frozenset()
            return Principal(kind="service", subject=info.client_id, roles=roles)
        return self.principal_for_grant(info.grant_id)

    def principal_for_grant(self, grant_id: str) -> Principal:
        """The principal of a live grant (a bearer token's, or a console session's): staff
        roles from the registry, the acting person for a legal person; ``Unauthenticated``
        when the grant is revoked (logout, identity suspended) or its identity inactive."""
        from govtrust.errors import Unauthenticated

        with self.db.read() as session:
            grant = session.get(OidcGrantRow, grant_id)
        if grant is None or grant.revoked_at is not None:
            raise Unauthenticated("the bearer token is not valid")
        ident = self.directory.identity(grant.identity_id)
        if ident is None or ident.status != "active":
            raise Unauthenticated("the identity behind the token is not active")
        roles = self.directory.staff_roles(ident.id) if ident.kind == "staff" else frozenset()
        return grant_principal(ident.kind, ident.id, grant.acting_person_id, roles)
