"""Client (relying party) registration.

Confidential clients get a 256-bit random secret, shown once and stored as its SHA-256 (a fast
hash is right for a high-entropy secret; argon2 is for human passwords). Redirect URIs are
compared exactly. Public clients have no secret and must use PKCE S256.
"""

# ruff: noqa: S105, S107 - auth-method and algorithm names are not passwords
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, select, update

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from govtrust.principal import Principal, is_known_role
from idp.oidc.models import OidcClientRow, OidcGrantRow, OidcRefreshTokenRow

CONFIDENTIAL = "confidential"
PUBLIC = "public"
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SCOPES = (
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "identity",
    "legal_person",
    "offline_access",
)
DEFAULT_SCOPES = (
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "legal_person",
    "offline_access",
)
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{2,127}$")
ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Client:
    """A registered client as the domain uses it."""

    client_id: str
    client_name: str
    client_type: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str = ""
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    token_endpoint_auth_method: str = "client_secret_basic"
    jwks_uri: str = ""
    jwks: str = ""
    allowed_scopes: tuple[str, ...] = DEFAULT_SCOPES
    subject_type: str = "public"
    sector_identifier: str = ""
    connection_mode: str = ""
    system_id: str = ""
    id_token_signing_alg: str = "ES256"
    roles: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    secret_hash: bytes | None = field(default=None, repr=False)

    @property
    def is_public(self) -> bool:
        return self.client_type == PUBLIC

    @property
    def sector(self) -> str:
        """The pairwise sector: the configured identifier, else the redirect URIs' host."""
        if self.sector_identifier:
            return urlsplit(self.sector_identifier).hostname or self.sector_identifier
        hosts = sorted({urlsplit(u).hostname or "" for u in self.redirect_uris})
        return hosts[0] if hosts else self.client_id

    def check_secret(self, secret: str) -> bool:
        """Constant-time comparison of a presented secret with the stored digest."""
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(hash_secret(secret), self.secret_hash)


@dataclass(frozen=True)
class RegisteredClient:
    """The result of registration: the client and its secret (shown only once)."""

    client: Client
    client_secret: str | None


def hash_secret(secret: str) -> bytes:
    """SHA-256 digest of a high-entropy secret (client secret, code, token, cookie)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _row_to_client(row: OidcClientRow) -> Client:
    return Client(
        client_id=row.client_id,
        client_name=row.client_name,
        client_type=row.client_type,
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        post_logout_redirect_uris=tuple(json.loads(row.post_logout_redirect_uris)),
        backchannel_logout_uri=row.backchannel_logout_uri,
        grant_types=tuple(json.loads(row.grant_types)),
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        jwks_uri=row.jwks_uri,
        jwks=row.jwks,
        allowed_scopes=tuple(json.loads(row.allowed_scopes)),
        subject_type=row.subject_type,
        sector_identifier=row.sector_identifier,
        connection_mode=row.connection_mode,
        system_id=row.system_id,
        id_token_signing_alg=row.id_token_signing_alg,
        roles=tuple(row.roles.split()),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        secret_hash=row.secret_hash,
    )


def _uri_violation(name: str, uri: str, *, allow_http_loopback: bool = True) -> str | None:
    parts = urlsplit(uri)
    if parts.fragment:
        return f"{name}: must not contain a fragment"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        if allow_http_loopback and parts.hostname in {"localhost", "127.0.0.1", "::1"}:
            return None
        return f"{name}: http is allowed only for loopback; use https"
    if (
        parts.scheme
        and parts.scheme not in {"http", "https", "javascript", "data"}
        and ("." in parts.scheme)
    ):
        return None  # private-use scheme of a native app (RFC 8252 §7.1), e.g. com.example.app
    return f"{name}: not an absolute https URI"


def validate_registration(
    *,
    client_name: str,
    client_type: str,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str],
    backchannel_logout_uri: str,
    grant_types: list[str],
    token_endpoint_auth_method: str,
    jwks_uri: str,
    jwks: str,
    allowed_scopes: list[str],
    subject_type: str,
    sector_identifier: str,
    connection_mode: str,
    system_id: str,
    id_token_signing_alg: str,
    client_id: str,
    roles: list[str],
) -> list[FieldViolation]:
    """Every violation of a registration request (empty when valid)."""
    out: list[FieldViolation] = []

    def bad(name: str, why: str) -> None:
        out.append(FieldViolation(name, why))

    if not client_name.strip() or len(client_name) > 200:
        bad("client_name", "required, at most 200 characters")
    if client_type not in {CONFIDENTIAL, PUBLIC}:
        bad("client_type", "must be confidential or public")
    if client_id and not CLIENT_ID_RE.match(client_id):
        bad("client_id", "3-128 characters from A-Z a-z 0-9 . _ : -")
    for i, uri in enumerate(redirect_uris):
        why = _uri_violation(f"redirect_uris[{i}]", uri)
        if why:
            bad(f"redirect_uris[{i}]", why.split(": ", 1)[1])
    for i, uri in enumerate(post_logout_redirect_uris):
        why = _uri_violation(f"post_logout_redirect_uris[{i}]", uri)
        if why:
            bad(f"post_logout_redirect_uris[{i}]", why.split(": ", 1)[1])
    if backchannel_logout_uri:
        why = _uri_violation("backchannel_logout_uri", backchannel_logout_uri)
        if why:
            bad("backchannel_logout_uri", why.split(": ", 1)[1])
    for gt in grant_types:
        if gt not in GRANT_TYPES:
            bad("grant_types", f"unknown grant type {gt!r}")
    if "authorization_code" in grant_types and not redirect_uris:
        bad("redirect_uris", "at least one is required for the authorization_code grant")
    if token_endpoint_auth_method not in AUTH_METHODS:
        bad("token_endpoint_auth_method", f"must be one of {', '.join(AUTH_METHODS)}")
    if client_type == PUBLIC:
        if token_endpoint_auth_method not in {"none", ""}:
            bad("token_endpoint_auth_method", "a public client authenticates with none (PKCE)")
        if "client_credentials" in grant_types:
            bad("grant_types", "a public client cannot use client_credentials")
    elif client_type == CONFIDENTIAL and token_endpoint_auth_method == "none":
        bad("token_endpoint_auth_method", "a confidential client must authenticate")
    if token_endpoint_auth_method == "private_key_jwt":
        if not jwks:
            bad("jwks", "private_key_jwt needs the client's JWKS")
        else:
            try:
                keys = json.loads(jwks).get("keys")
                if not isinstance(keys, list) or not keys:
                    raise ValueError
            except (ValueError, AttributeError):
                bad("jwks", "not a JSON JWK Set with at least one key")
    if jwks_uri:
        bad("jwks_uri", "not supported yet: register the JWKS itself")
    for scope in allowed_scopes:
        if scope not in SCOPES:
            bad("allowed_scopes", f"unknown scope {scope!r}")
    if subject_type not in {"public", "pairwise"}:
        bad("subject_type", "must be public or pairwise")
    if connection_mode not in {"", "unified", "mapped"}:
        bad("connection_mode", "must be unified or mapped")
    if connection_mode == "mapped" and not system_id:
        bad("system_id", "required for a mapped-mode client")
    if id_token_signing_alg not in {"ES256", "RS256"}:
        bad("id_token_signing_alg", "must be ES256 or RS256")
    for role in roles:
        if not is_known_role(role):
            bad("roles", f"unknown role {role!r}")
    return out


CACHE_SECONDS = 2.0


class ClientRegistry:
    """Register, read, list and remove clients; every change audited.

    :meth:`cached` serves the token endpoint's hot path from a per-process cache of at most
    ``CACHE_SECONDS`` (a removal elsewhere takes effect for client authentication within that
    time; access tokens of a removed client stop validating at once, see the provider).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Client | None]] = {}

    def cached(self, client_id: str) -> Client | None:
        """:meth:`find` through a short per-process cache."""
        now = time.monotonic()
        hit = self._cache.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        client = self.find(client_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[client_id] = (now + CACHE_SECONDS, client)
        return client

    def register(
        self,
        principal: Principal,
        *,
        client_name: str,
        client_type: str = CONFIDENTIAL,
        redirect_uris: list[str] | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        backchannel_logout_uri: str = "",
        grant_types: list[str] | None = None,
        token_endpoint_auth_method: str = "",
        jwks_uri: str = "",
        jwks: str = "",
        allowed_scopes: list[str] | None = None,
        subject_type: str = "public",
        sector_identifier: str = "",
        connection_mode: str = "",
        system_id: str = "",
        id_token_signing_alg: str = "ES256",
        client_id: str = "",
        roles: list[str] | None = None,
        client_secret: str = "",
    ) -> RegisteredClient:
        """Register a client (``admin`` only); returns it with its secret, if it has one
        (``client_secret``: a first-party client's derived secret, else a random one)."""
        principal.require_role(ADMIN_ROLE)
        redirect_uris = list(redirect_uris or [])
        post_logout = list(post_logout_redirect_uris or [])
        grant_types = list(grant_types or ["authorization_code", "refresh_token"])
        allowed_scopes = list(allowed_scopes or DEFAULT_SCOPES)
        roles = list(roles or [])
        method = token_endpoint_auth_method or (
            "none" if client_type == PUBLIC else "client_secret_basic"
        )
        violations = validate_registration(
            client_name=client_name,
            client_type=client_type,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout,
            backchannel_logout_uri=backchannel_logout_uri,
            grant_types=grant_types,
            token_endpoint_auth_method=method,
            jwks_uri=jwks_uri,
            jwks=jwks,
            allowed_scopes=allowed_scopes,
            subject_type=subject_type,
            sector_identifier=sector_identifier,
            connection_mode=connection_mode,
            system_id=system_id,
            id_token_signing_alg=id_token_signing_alg,
            client_id=client_id,
            roles=roles,
        )
        if violations:
            raise InvalidArgument(
                "invalid client registration: "
                + "; ".join(f"{v.field}: {v.description}" for v in violations),
                violations,
            )
        if "openid" not in allowed_scopes:
            allowed_scopes.insert(0, "openid")
        client_id = client_id or f"c_{secrets.token_urlsafe(12)}"
        secret = (
            (client_secret or secrets.token_urlsafe(32))
            if method in {"client_secret_basic", "client_secret_post"}
            else None
        )
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            if session.get(OidcClientRow, client_id) is not None:
                raise AlreadyExists(f"client {client_id} already exists")
            row = OidcClientRow(
                client_id=client_id,
                client_name=client_name.strip(),
                client_type=client_type,
                secret_hash=hash_secret(secret) if secret else None,
                redirect_uris=json.dumps(redirect_uris),
                post_logout_redirect_uris=json.dumps(post_logout),
                grant_types=json.dumps(grant_types),
                allowed_scopes=json.dumps(allowed_scopes),
                backchannel_logout_uri=backchannel_logout_uri,
                token_endpoint_auth_method=method,
                jwks_uri=jwks_uri,
                jwks=jwks,
                subject_type=subject_type,
                sector_identifier=sector_identifier,
                connection_mode=connection_mode,
                system_id=system_id,
                id_token_signing_alg=id_token_signing_alg,
                roles=" ".join(sorted(set(roles))),
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=principal.actor,
                action="oidc.client.register",
                target=f"oidc-client:{client_id}",
                details={
                    "client_type": client_type,
                    "redirect_uris": redirect_uris,
                    "grant_types": grant_types,
                    "scopes": allowed_scopes,
                },
            )
            client = _row_to_client(row)
        return RegisteredClient(client, secret)

    def get(self, client_id: str) -> Client:
        """One client (``NotFound`` when unknown)."""
        with self.db.read() as session:
            row = session.get(OidcClientRow, client_id)
            if row is None:
                raise NotFound(f"client {client_id} does not exist")
            return _row_to_client(row)

    def find(self, client_id: str) -> Client | None:
        """One client or None."""
        with self.db.read() as session:
            row = session.get(OidcClientRow, client_id)
            return _row_to_client(row) if row is not None else None

    def list(self, *, page_size: int = 100, after: str = "") -> tuple[list[Client], str]:
        """Clients ordered by id, one page; returns (clients, last id when more remain)."""
        size = max(1, min(page_size or 100, 1000))
        with self.db.read() as session:
            rows = list(
                session.scalars(
                    select(OidcClientRow)
                    .where(OidcClientRow.client_id > after)
                    .order_by(OidcClientRow.client_id)
                    .limit(size + 1)
                )
            )
        more = len(rows) > size
        rows = rows[:size]
        return [_row_to_client(r) for r in rows], (rows[-1].client_id if more else "")

    def remove(self, principal: Principal, client_id: str) -> int:
        """Remove a client and revoke every grant and refresh token issued to it.

        Returns how many grants and refresh tokens were revoked. Access tokens of the client stop
        validating too: validation checks that the client still exists.
        """
        principal.require_role(ADMIN_ROLE)
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            row = session.get(OidcClientRow, client_id)
            if row is None:
                raise NotFound(f"client {client_id} does not exist")
            grants = _rowcount(
                session.execute(
                    update(OidcGrantRow)
                    .where(OidcGrantRow.client_id == client_id)
                    .where(OidcGrantRow.revoked_at.is_(None))
                    .values(revoked_at=now, revoke_reason="client_removed")
                )
            )
            tokens = _rowcount(
                session.execute(
                    update(OidcRefreshTokenRow)
                    .where(OidcRefreshTokenRow.client_id == client_id)
                    .where(OidcRefreshTokenRow.revoked_at.is_(None))
                    .where(OidcRefreshTokenRow.used_at.is_(None))
                    .values(revoked_at=now)
                )
            )
            session.delete(row)
            self._cache.pop(client_id, None)
            audit.append(
                session,
                actor=principal.actor,
                action="oidc.client.remove",
                target=f"oidc-client:{client_id}",
                details={"revoked_grants": grants, "revoked_refresh_tokens": tokens},
            )
        return grants + tokens


def _rowcount(result: Any) -> int:
    """Rows matched by an UPDATE (a ``CursorResult``)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


def client_to_dict(client: Client) -> dict[str, Any]:
    """A JSON-friendly view of a client (never the secret)."""
    return {
        "client_id": client.client_id,
        "client_name": client.client_name,
        "client_type": client.client_type,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "grant_types": list(client.grant_types),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "allowed_scopes": list(client.allowed_scopes),
        "subject_type": client.subject_type,
        "sector_identifier": client.sector_identifier,
        "connection_mode": client.connection_mode,
        "system_id": client.system_id,
        "id_token_signing_alg": client.id_token_signing_alg,
        "roles": list(client.roles),
    }
