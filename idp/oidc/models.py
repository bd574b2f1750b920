"""Tables of the OpenID Connect provider (all prefixed ``oidc_``).

Secrets (client secrets, authorization codes, refresh tokens, session cookies) are stored only
as SHA-256 digests: each is 256 random bits, so a fast hash is enough and a database dump yields
nothing usable. Identity rows live in the registry's tables; this schema refers to them by id
without foreign keys (the registry migration is a separate branch).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from govtrust.db import Base

ID_LENGTH = 64
URI_LENGTH = 2000


class OidcClientRow(Base):
    """A registered relying party."""

    __tablename__ = "oidc_clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_name: Mapped[str] = mapped_column(String(200))
    client_type: Mapped[str] = mapped_column(String(16))  # confidential | public
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    # JSON arrays of strings.
    redirect_uris: Mapped[str] = mapped_column(Text)
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text)
    grant_types: Mapped[str] = mapped_column(Text)
    allowed_scopes: Mapped[str] = mapped_column(Text)
    backchannel_logout_uri: Mapped[str] = mapped_column(String(URI_LENGTH))
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    jwks_uri: Mapped[str] = mapped_column(String(URI_LENGTH))
    jwks: Mapped[str] = mapped_column(Text)
    subject_type: Mapped[str] = mapped_column(String(16))  # public | pairwise
    sector_identifier: Mapped[str] = mapped_column(String(URI_LENGTH))
    connection_mode: Mapped[str] = mapped_column(String(16))  # "" | unified | mapped
    system_id: Mapped[str] = mapped_column(String(128))
    id_token_signing_alg: Mapped[str] = mapped_column(String(8))
    # Space-separated govtrust roles a client_credentials token of this client carries.
    roles: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OidcSigningKeyRow(Base):
    """A JWS signing key held in the key store; published in JWKS until ``publish_until``."""

    __tablename__ = "oidc_signing_keys"

    kid: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    keystore_key_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    alg: Mapped[str] = mapped_column(String(8), index=True)
    status: Mapped[str] = mapped_column(String(16))  # active | retired
    public_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    publish_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OidcPasswordRow(Base):
    """An identity's password credential (argon2id) under a login name."""

    __tablename__ = "oidc_passwords"

    identity_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    login_name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OidcThrottleRow(Base):
    """Failed-login counter for one account or one source address."""

    __tablename__ = "oidc_login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OidcSessionRow(Base):
    """An SSO session (one browser login), found by the digest of its cookie."""

    __tablename__ = "oidc_sessions"

    sid: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    cookie_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    identity_id: Mapped[str] = mapped_column(String(40), index=True)
    acting_person_id: Mapped[str | None] = mapped_column(String(40))
    auth_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[str] = mapped_column(String(200))  # space-separated
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OidcSessionClientRow(Base):
    """A client that received tokens in a session (for back-channel logout)."""

    __tablename__ = "oidc_session_clients"

    sid: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)


class OidcConsentRow(Base):
    """Scopes an identity has consented to for a client."""

    __tablename__ = "oidc_consents"

    identity_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    scopes: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OidcInteractionRow(Base):
    """A pending authorization request waiting for login, consent or acting-person choice."""

    __tablename__ = "oidc_interactions"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(ID_LENGTH))
    params: Mapped[str] = mapped_column(Text)  # JSON of the validated authorization request
    challenge: Mapped[str] = mapped_column(String(ID_LENGTH))  # certificate-login challenge
    # JSON: the pending login result (identity, acr, amr) between steps; "" before login.
    pending: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OidcGrantRow(Base):
    """A token family: everything issued from one authorization code."""

    __tablename__ = "oidc_grants"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), index=True)
    identity_id: Mapped[str] = mapped_column(String(40), index=True)
    acting_person_id: Mapped[str | None] = mapped_column(String(40))
    sid: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    scope: Mapped[str] = mapped_column(Text)
    claims_sub: Mapped[str] = mapped_column(String(128))
    auth_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoke_reason: Mapped[str] = mapped_column(String(64))


class OidcAuthCodeRow(Base):
    """A one-time authorization code (stored as its digest)."""

    __tablename__ = "oidc_auth_codes"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    client_id: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(String(URI_LENGTH))
    nonce: Mapped[str] = mapped_column(String(512))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OidcRefreshTokenRow(Base):
    """A refresh token (digest); rotated on use, and a reused one revokes its family (unless the
    reuse interval re-answers a lost rotation: idp/oidc/reuse.py)."""

    __tablename__ = "oidc_refresh_tokens"
    __table_args__ = (Index("ix_oidc_refresh_tokens_grant", "grant_id"),)

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    client_id: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the digest of the token whose rotation minted this one (None for a code's first token and
    # for tokens minted before migration 0024): the parent link of the reuse interval
    # (idp/oidc/reuse.py)
    rotated_from: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class OidcRevokedJtiRow(Base):
    """A revoked access token by ``jti`` (kept until the token would have expired)."""

    __tablename__ = "oidc_revoked_jti"

    jti: Mapped[str] = mapped_column(String(ID_LENGTH * 2 + 1), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OidcAssertionJtiRow(Base):
    """A ``private_key_jwt`` client assertion already used (replay protection)."""

    __tablename__ = "oidc_assertion_jti"

    jti: Mapped[str] = mapped_column(String(300), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OidcRpSessionRow(Base):
    """A first-party relying party's session (the console's): one browser's login at the
    console, backed by the OIDC grant its code was exchanged for. Found by the digest of its
    cookie; ``csrf`` is the synchroniser token of its forms; ``last_seen_at`` drives the idle
    timeout, ``created_at`` the absolute one."""

    __tablename__ = "oidc_rp_sessions"

    cookie_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    grant_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    identity_id: Mapped[str] = mapped_column(String(40), index=True)
    sid: Mapped[str] = mapped_column(String(ID_LENGTH))
    id_token: Mapped[str] = mapped_column(Text)  # the logout hint (RP-initiated logout)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
