"""The OpenID Connect provider: authorization, logins, sessions, codes and tokens.

Framework-free: the HTTP adapter parses requests into dicts and calls these methods (in a worker
thread), then turns the outcomes into responses. Every token-minting change happens in one write
transaction with its audit record, except the stateless client_credentials grant. The token
endpoint and client authentication live in :mod:`idp.oidc.grants` (inherited by :class:`Provider`).

Token model:

* A *grant* is a token family: everything descended from one authorization code. Its id rides in
  every access token's ``jti`` (``<grant id>.<random>``). Revoking a grant (code reuse, refresh
  token reuse, revocation of a refresh token, logout, client removal) stops the whole family.
* Access tokens are ES256 JWTs (``typ: at+jwt``, RFC 9068); validation checks the signature with
  our key and explicit algorithm, the claims, then one query: client exists, ``jti`` not revoked,
  grant not revoked.
* Refresh tokens and codes are 256-bit random strings stored as SHA-256; refresh tokens rotate on
  every use, and presenting a used one revokes the family (OAuth 2.0 Security BCP §4.14).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Table, delete, select, update

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.fastsql import FastSql
from govtrust.principal import Principal
from hsm import KeyStore
from idp.oidc import certlogin
from idp.oidc.clients import Client, ClientRegistry, hash_secret
from idp.oidc.directory import ActingCandidate, RegistryDirectory
from idp.oidc.errors import AuthorizationPageError, InvalidToken, OAuthError
from idp.oidc.grants import ASSERTION_ALGORITHMS, TokenGrants
from idp.oidc.grants import WriteWouldBlock as WriteWouldBlock  # re-exported (the HTTP adapter)
from idp.oidc.keys import SigningKeys, sign_jwt
from idp.oidc.models import (
    OidcAuthCodeRow,
    OidcConsentRow,
    OidcGrantRow,
    OidcInteractionRow,
    OidcRefreshTokenRow,
    OidcRevokedJtiRow,
    OidcSessionClientRow,
    OidcSessionRow,
)
from idp.oidc.passwords import LoginFailed, PasswordLogin
from idp.oidc.tokens import TokenRejected, TokenValidator

ACR_PREFIX = "urn:govtrust:loa:"
ACR_VALUES = tuple(f"{ACR_PREFIX}{n}" for n in (1, 2, 3))
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
PAIRWISE_PURPOSE = "idp/oidc-pairwise/v1"
CSRF_PURPOSE = "idp/oidc-csrf/v1"
VERIFIED_CACHE_SIZE = 20_000


_GT = cast(Table, OidcGrantRow.__table__)


class SqliteWriteGate:
    """Serialise token-minting write transactions on SQLite, across threads and processes.

    SQLite has one writer; a waiting writer polls in SQLite's busy handler, sleeping up to 100 ms
    between tries, which collapses throughput when ``--workers N`` processes contend. A thread
    lock plus ``flock`` on a side file hands the write lock over at once instead.
    """

    def __init__(self, database_path: str) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        if database_path and database_path != ":memory:":
            self._fd = os.open(f"{database_path}.oidc-write.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()


_SQL_VALIDATE = (
    "SELECT (SELECT count(*) FROM oidc_clients WHERE client_id = :cid),"
    " (SELECT count(*) FROM oidc_revoked_jti WHERE jti = :jti),"
    " (SELECT count(*) FROM oidc_grants WHERE id = :gid AND revoked_at IS NULL)"
)


def _now() -> datetime:
    return datetime.now(UTC)


def acr_level(acr: str) -> int:
    """The level of an ``urn:govtrust:loa:N`` value (0 for anything else)."""
    if acr.startswith(ACR_PREFIX) and acr[len(ACR_PREFIX) :].isdigit():
        return int(acr[len(ACR_PREFIX) :])
    return 0


@dataclass(frozen=True)
class ProviderConfig:
    """Issuer and lifetimes (seconds)."""

    issuer: str
    code_ttl: int = 60
    access_token_ttl: int = 900
    id_token_ttl: int = 3600
    refresh_token_ttl: int = 14 * 24 * 3600
    session_ttl: int = 12 * 3600
    interaction_ttl: int = 1800
    clock_skew: int = 60
    secure_cookies: bool = False

    def endpoint(self, path: str) -> str:
        """Absolute URL of one of our endpoints."""
        return f"{self.issuer}{path}"


@dataclass(frozen=True)
class AuthRequest:
    """A validated authorization request (OIDC Core §3.1.2.1); unknown parameters dropped."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str = ""
    nonce: str = ""
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    login_hint: str = ""
    acr_values: tuple[str, ...] = ()
    ui_locales: str = ""
    code_challenge: str = ""
    code_challenge_method: str = ""
    hinted_sub: str = ""


@dataclass(frozen=True)
class SessionInfo:
    """The SSO session behind a browser cookie."""

    sid: str
    identity_id: str
    acting_person_id: str | None
    auth_time: datetime
    acr: str
    amr: tuple[str, ...]


@dataclass(frozen=True)
class Redirect:
    """Send the browser to ``url``; optionally set (or clear, with "") the session cookie."""

    url: str
    session_cookie: str | None = None


@dataclass(frozen=True)
class ShowInteraction:
    """Send the browser to the interaction pages (login, acting person, consent)."""

    interaction_id: str


@dataclass(frozen=True)
class InteractionView:
    """What an interaction page shows."""

    id: str
    stage: str  # login | acting | consent
    csrf: str
    client_name: str
    scopes: tuple[str, ...]
    challenge: str
    login_hint: str
    ui_locales: str
    required_acr: str
    candidates: tuple[ActingCandidate, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class LogoutNotice:
    """A back-channel logout token to POST to a client."""

    client_id: str
    uri: str
    logout_token: str


@dataclass(frozen=True)
class LogoutOutcome:
    """Where to send the browser after logout, and whom to notify."""

    redirect_url: str | None
    notices: tuple[LogoutNotice, ...] = ()
    logged_out: bool = True


@dataclass(frozen=True)
class TokenInfo:
    """A validated access token."""

    claims: dict[str, Any]
    grant_id: str | None
    client_id: str
    scopes: frozenset[str]


@dataclass
class _Pending:
    identity_id: str
    acr: str
    amr: list[str]
    auth_time: float
    needs_acting: bool = False
    acting_person_id: str | None = None
    session_cookie: str = ""
    sid: str = ""


def _add_query(uri: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((k, v) for k, v in params.items() if v != "")
    return urlunsplit(parts._replace(query=urlencode(query)))


class Provider(TokenGrants):
    """All OpenID Connect provider behaviour over one database and key store."""

    def __init__(
        self,
        db: Database,
        keystore: KeyStore,
        config: ProviderConfig,
        *,
        key_deriver: Any,
        validator: certlogin.CertificateValidator | None = None,
        passwords: PasswordLogin | None = None,
        directory: RegistryDirectory | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        from idp.pii import PiiCodec

        self.db = db
        # The provider's clock (UTC): codes, sessions, tokens and assertions are timed by it;
        # tests install a fixed one to check validity at its exact boundaries.
        self.now: Callable[[], datetime] = clock or _now
        self.config = config
        self.keystore = keystore
        self.clients = ClientRegistry(db)
        self.keys = SigningKeys(
            db,
            keystore,
            overlap=timedelta(
                seconds=max(config.access_token_ttl, config.id_token_ttl) + config.clock_skew
            ),
        )
        # Provider-side access tokens get no clock skew: we sign them on this clock.
        self.tokens = TokenValidator(self.keys, config.issuer)
        self.passwords = passwords or PasswordLogin(db)
        self.directory = directory or RegistryDirectory(
            db, PiiCodec.from_master_key(key_deriver), key_deriver.derive_key(PAIRWISE_PURPOSE)
        )
        self.validator: certlogin.CertificateValidator = validator or certlogin.CaDatabaseValidator(
            db
        )
        self._csrf_key = key_deriver.derive_key(CSRF_PURPOSE)
        self._keys_ready = False
        self.fast = FastSql(db.engine)
        # Reads are local and take tens of microseconds (SQLite): callers may run them inline.
        self.local_reads = db.engine.dialect.name == "sqlite"
        self._verified: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        # SQLite has one writer: queueing our own threads here is far cheaper than letting them
        # spin in SQLite's busy handler (sleep-and-retry) for the write lock.
        self._write_lock: Any = (
            SqliteWriteGate(db.engine.url.database or "")
            if db.engine.dialect.name == "sqlite"
            else contextlib.nullcontext()
        )

    def ensure_keys(self) -> None:
        """Create the signing keys on first use (outside any write transaction)."""
        if not self._keys_ready:
            self.keys.ensure()
            self._keys_ready = True

    # ============================================================================ discovery

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider metadata (OIDC Discovery §3)."""
        e = self.config.endpoint
        return {
            "issuer": self.config.issuer,
            "authorization_endpoint": e("/oidc/authorize"),
            "token_endpoint": e("/oidc/token"),
            "userinfo_endpoint": e("/oidc/userinfo"),
            "jwks_uri": e("/oidc/jwks"),
            "introspection_endpoint": e("/oidc/introspect"),
            "revocation_endpoint": e("/oidc/revoke"),
            "end_session_endpoint": e("/oidc/end_session"),
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "frontchannel_logout_supported": False,
            "scopes_supported": [
                "openid",
                "profile",
                "email",
                "phone",
                "address",
                "identity",
                "legal_person",
                "offline_access",
            ],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public", "pairwise"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "userinfo_signing_alg_values_supported": [],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "acr",
                "amr",
                "sid",
                "azp",
                "at_hash",
                "name",
                "birthdate",
                "gender",
                "updated_at",
                "email",
                "email_verified",
                "phone_number",
                "phone_number_verified",
                "address",
                "resident_id_number",
                "legal_person",
                "local_account_id",
                "department",
                "identity_kind",
                "assurance_level",
            ],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "acr_values_supported": list(ACR_VALUES),
            "prompt_values_supported": ["none", "login", "consent"],
            "ui_locales_supported": ["zh-CN", "en"],
            "claim_types_supported": ["normal"],
            "authorization_response_iss_parameter_supported": True,
        }

    # ============================================================================ sessions

    def session_for_cookie(self, cookie: str | None) -> SessionInfo | None:
        """The live session behind a session cookie, if any."""
        if not cookie:
            return None
        with self.db.read() as session:
            row = session.scalar(
                select(OidcSessionRow).where(OidcSessionRow.cookie_hash == hash_secret(cookie))
            )
            if row is None or row.ended_at is not None or as_utc(row.expires_at) <= self.now():
                return None
            return SessionInfo(
                row.sid,
                row.identity_id,
                row.acting_person_id,
                as_utc(row.auth_time),
                row.acr,
                tuple(row.amr.split()),
            )

    def csrf_for_session(self, cookie: str) -> str:
        """A CSRF token bound to the session cookie (for the logout confirmation form)."""
        return hmac.new(self._csrf_key, cookie.encode(), hashlib.sha256).hexdigest()

    # ============================================================================ authorize

    def parse_authorization(self, params: Mapping[str, str]) -> tuple[AuthRequest, Client]:
        """Validate client and redirect URI (page errors) then the rest (redirect errors).

        Raises :class:`AuthorizationPageError` when we cannot redirect safely, and
        :class:`RedirectableError` (an :class:`OAuthError` carrying the redirect) otherwise.
        """
        client_id = params.get("client_id", "")
        client = self.clients.find(client_id) if client_id else None
        if client is None:
            raise AuthorizationPageError("unknown client")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or redirect_uri not in client.redirect_uris:
            raise AuthorizationPageError("the redirect_uri is not registered for this client")
        state = params.get("state", "")

        def fail(error: str, description: str) -> RedirectableError:
            return RedirectableError(error, description, redirect_uri=redirect_uri, state=state)

        if "authorization_code" not in client.grant_types:
            raise fail("unauthorized_client", "the client may not use the code flow")
        if "request" in params:
            raise fail("request_not_supported", "request objects are not supported")
        if "request_uri" in params:
            raise fail("request_uri_not_supported", "request_uri is not supported")
        if params.get("response_type", "") != "code":
            raise fail("unsupported_response_type", "only response_type=code is supported")
        response_mode = params.get("response_mode", "")
        if response_mode not in {"", "query"}:
            raise fail("invalid_request", "only response_mode=query is supported")
        requested = params.get("scope", "").split()
        if "openid" not in requested:
            raise fail("invalid_scope", "the openid scope is required")
        scope = tuple(dict.fromkeys(s for s in requested if s in client.allowed_scopes))
        prompt = tuple(params.get("prompt", "").split())
        if any(p not in {"none", "login", "consent", "select_account"} for p in prompt):
            raise fail("invalid_request", "unsupported prompt value")
        if "none" in prompt and len(prompt) > 1:
            raise fail("invalid_request", "prompt=none cannot be combined")
        max_age: int | None = None
        if params.get("max_age", "") != "":
            try:
                max_age = int(params["max_age"])
                if max_age < 0:
                    raise ValueError
            except ValueError:
                raise fail("invalid_request", "max_age must be a non-negative integer") from None
        challenge = params.get("code_challenge", "")
        method = params.get("code_challenge_method", "")
        if challenge:
            method = method or "plain"
            if method != "S256":
                raise fail("invalid_request", "code_challenge_method must be S256")
            if not 43 <= len(challenge) <= 128:
                raise fail("invalid_request", "code_challenge has the wrong length")
        elif method:
            raise fail("invalid_request", "code_challenge_method without code_challenge")
        if client.is_public and not challenge:
            raise fail("invalid_request", "public clients must use PKCE (S256)")
        acr_values = tuple(a for a in params.get("acr_values", "").split() if a)
        hinted_sub = ""
        if params.get("id_token_hint"):
            try:
                hint = self.verify_id_token_hint(params["id_token_hint"])
            except InvalidToken:
                raise fail("invalid_request", "the id_token_hint is not valid") from None
            if client.client_id not in _audiences(hint):
                raise fail("invalid_request", "the id_token_hint was issued to another client")
            hinted_sub = str(hint["sub"])
        request = AuthRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            nonce=params.get("nonce", "")[:512],
            prompt=prompt,
            max_age=max_age,
            login_hint=params.get("login_hint", "")[:200],
            acr_values=acr_values,
            ui_locales=params.get("ui_locales", "")[:100],
            code_challenge=challenge,
            code_challenge_method=method,
            hinted_sub=hinted_sub,
        )
        return request, client

    def required_level(self, request: AuthRequest) -> int:
        """The lowest assurance level among the requested ``acr_values`` (0 if none known)."""
        levels = [acr_level(a) for a in request.acr_values if acr_level(a)]
        return min(levels) if levels else 0

    def authorize(
        self, params: Mapping[str, str], cookie: str | None
    ) -> Redirect | ShowInteraction:
        """Handle an authorization request from the browser."""
        request, client = self.parse_authorization(params)
        session = self.session_for_cookie(cookie)
        return self._decide(request, client, session, fresh=False)

    def _needs_login(self, request: AuthRequest, session: SessionInfo | None) -> bool:
        if session is None or "login" in request.prompt:
            return True
        if request.hinted_sub:
            client = self.clients.find(request.client_id)
            if client is None or request.hinted_sub != self.directory.subject_for(
                session.identity_id,
                pairwise=client.subject_type == "pairwise",
                sector=client.sector,
            ):
                return True
        if request.max_age is not None:
            age = (self.now() - session.auth_time).total_seconds()
            if age > request.max_age:
                return True
        return acr_level(session.acr) < self.required_level(request)

    def _needs_consent(self, request: AuthRequest, identity_id: str) -> bool:
        if "consent" in request.prompt:
            return True
        wanted = set(request.scope) - {"openid"}
        if not wanted:
            return False
        with self.db.read() as session:
            row = session.get(OidcConsentRow, (identity_id, request.client_id))
        granted = set(row.scopes.split()) if row else set()
        return not wanted <= granted

    def _decide(
        self,
        request: AuthRequest,
        client: Client,
        session: SessionInfo | None,
        *,
        fresh: bool,
        interaction_id: str | None = None,
    ) -> Redirect | ShowInteraction:
        needs_login = not fresh and self._needs_login(request, session)
        if needs_login or session is None:
            if "none" in request.prompt:
                return Redirect(self._error_url(request, "login_required", "no usable session"))
            return ShowInteraction(interaction_id or self._new_interaction(request))
        if self._needs_consent(request, session.identity_id) and not (
            interaction_id and self._consented_in(interaction_id)
        ):
            if "none" in request.prompt:
                return Redirect(self._error_url(request, "consent_required", "consent needed"))
            iid = interaction_id or self._new_interaction(request)
            self._set_stage(iid, consent=True)
            return ShowInteraction(iid)
        return Redirect(self._issue_code(request, client, session))

    def _error_url(self, request: AuthRequest, error: str, description: str) -> str:
        return _add_query(
            request.redirect_uri,
            {
                "error": error,
                "error_description": description,
                "state": request.state,
                "iss": self.config.issuer,
            },
        )

    def _issue_code(self, request: AuthRequest, client: Client, session: SessionInfo) -> str:
        code = secrets.token_urlsafe(32)
        grant_id = secrets.token_urlsafe(16)
        now = self.now()
        sub = self.directory.subject_for(
            session.identity_id,
            pairwise=client.subject_type == "pairwise",
            sector=client.sector,
        )
        with self.db.transaction() as tx:
            tx.add(
                OidcGrantRow(
                    id=grant_id,
                    client_id=client.client_id,
                    identity_id=session.identity_id,
                    acting_person_id=session.acting_person_id,
                    sid=session.sid,
                    scope=" ".join(request.scope),
                    claims_sub=sub,
                    auth_time=session.auth_time,
                    acr=session.acr,
                    amr=" ".join(session.amr),
                    created_at=now,
                    revoked_at=None,
                    revoke_reason="",
                )
            )
            tx.add(
                OidcAuthCodeRow(
                    code_hash=hash_secret(code),
                    grant_id=grant_id,
                    client_id=client.client_id,
                    redirect_uri=request.redirect_uri,
                    nonce=request.nonce,
                    code_challenge=request.code_challenge,
                    code_challenge_method=request.code_challenge_method,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.config.code_ttl),
                    used_at=None,
                )
            )
            if tx.get(OidcSessionClientRow, (session.sid, client.client_id)) is None:
                tx.add(OidcSessionClientRow(sid=session.sid, client_id=client.client_id))
            audit.append(
                tx,
                actor=f"user:{session.identity_id}",
                action="oidc.authorize",
                target=f"oidc-client:{client.client_id}",
                details={"grant": grant_id, "scope": list(request.scope), "acr": session.acr},
            )
        return _add_query(
            request.redirect_uri, {"code": code, "state": request.state, "iss": self.config.issuer}
        )

    # ============================================================================ interactions

    def _new_interaction(self, request: AuthRequest) -> str:
        iid = secrets.token_urlsafe(16)
        now = self.now()
        with self.db.transaction() as tx:
            tx.execute(delete(OidcInteractionRow).where(OidcInteractionRow.expires_at < now))
            tx.add(
                OidcInteractionRow(
                    id=iid,
                    csrf=secrets.token_urlsafe(24),
                    params=json.dumps(asdict(request)),
                    challenge=secrets.token_urlsafe(24),
                    pending="",
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.config.interaction_ttl),
                )
            )
        return iid

    def _load_interaction(self, iid: str) -> tuple[OidcInteractionRow, AuthRequest]:
        with self.db.read() as session:
            row = session.get(OidcInteractionRow, iid)
        if row is None or as_utc(row.expires_at) <= self.now():
            raise AuthorizationPageError("this login page has expired; start again")
        data = json.loads(row.params)
        data["scope"], data["prompt"] = tuple(data["scope"]), tuple(data["prompt"])
        data["acr_values"] = tuple(data["acr_values"])
        return row, AuthRequest(**data)

    def _pending(self, row: OidcInteractionRow) -> dict[str, Any]:
        return json.loads(row.pending) if row.pending else {}

    def _save_pending(self, iid: str, **changes: Any) -> None:
        with self.db.transaction() as tx:
            row = tx.get(OidcInteractionRow, iid)
            if row is None:
                raise AuthorizationPageError("this login page has expired; start again")
            data = json.loads(row.pending) if row.pending else {}
            data.update(changes)
            row.pending = json.dumps(data)

    def _set_stage(self, iid: str, *, consent: bool) -> None:
        self._save_pending(iid, consent_stage=consent)

    def _consented_in(self, iid: str) -> bool:
        with self.db.read() as session:
            row = session.get(OidcInteractionRow, iid)
        return bool(row and self._pending(row).get("consented"))

    def interaction_view(self, iid: str, *, error: str = "") -> InteractionView:
        """What to show for an interaction: login, acting-person choice or consent."""
        row, request = self._load_interaction(iid)
        client = self.clients.find(request.client_id)
        if client is None:
            raise AuthorizationPageError("unknown client")
        pending = self._pending(row)
        stage = "login"
        candidates: tuple[ActingCandidate, ...] = ()
        if pending.get("needs_acting") and not pending.get("acting_person_id"):
            stage = "acting"
            candidates = tuple(self.directory.acting_candidates(pending["identity_id"]))
        elif pending.get("consent_stage"):
            stage = "consent"
        level = self.required_level(request)
        return InteractionView(
            id=iid,
            stage=stage,
            csrf=row.csrf,
            client_name=client.client_name,
            scopes=request.scope,
            challenge=row.challenge,
            login_hint=request.login_hint,
            ui_locales=request.ui_locales,
            required_acr=f"{ACR_PREFIX}{level}" if level else "",
            candidates=candidates,
            error=error,
        )

    def check_csrf(self, iid: str, csrf: str) -> None:
        """Refuse a form post whose CSRF token does not match the interaction's."""
        row, _request = self._load_interaction(iid)
        if not csrf or not hmac.compare_digest(row.csrf.encode(), csrf.encode()):
            raise AuthorizationPageError("the form has expired or was not sent by this page")

    def password_login(
        self, iid: str, csrf: str, login_name: str, password: str, *, source: str
    ) -> Redirect | ShowInteraction:
        """Check a password for an interaction; on success continue the flow."""
        self.check_csrf(iid, csrf)
        try:
            identity_id = self.passwords.authenticate(login_name, password, source=source)
        except LoginFailed:
            raise LoginPageError("login_failed") from None
        info = self.directory.identity(identity_id)
        if info is None or info.status != "active":
            raise LoginPageError("login_failed")
        level = 2 if info.assurance_level >= 2 else 1
        return self._logged_in(iid, identity_id, f"{ACR_PREFIX}{level}", ["pwd"], False)

    def certificate_login(
        self, iid: str, csrf: str, chain_pem: str, signature_b64: str
    ) -> Redirect | ShowInteraction:
        """Check a certificate login (challenge signature, chain, status, mapping)."""
        self.check_csrf(iid, csrf)
        row, _request = self._load_interaction(iid)
        try:
            signature = base64.b64decode(signature_b64.strip(), validate=True)
            subject = certlogin.verify_login(self.validator, chain_pem, row.challenge, signature)
        except (certlogin.CertificateRejected, binascii.Error, ValueError):
            raise LoginPageError("certificate_failed") from None
        if subject.kind == "legal_person":
            identity_id = self.directory.legal_person_by_uscc(subject.identifier)
        else:
            identity_id = self.directory.citizen_by_id_number(subject.identifier)
        info = self.directory.identity(identity_id) if identity_id else None
        if info is None or info.status != "active":
            raise LoginPageError("certificate_failed")
        # The challenge is single use: a new one for any later attempt.
        with self.db.transaction() as tx:
            fresh = tx.get(OidcInteractionRow, iid)
            if fresh is not None:
                fresh.challenge = secrets.token_urlsafe(24)
        return self._logged_in(
            iid, info.id, f"{ACR_PREFIX}3", ["x509"], subject.kind == "legal_person"
        )

    def choose_acting_person(
        self, iid: str, csrf: str, person_id: str
    ) -> Redirect | ShowInteraction:
        """Record which authorised citizen acts for the logged-in legal person."""
        self.check_csrf(iid, csrf)
        row, _request = self._load_interaction(iid)
        pending = self._pending(row)
        if not pending.get("needs_acting"):
            raise AuthorizationPageError("nothing to choose")
        allowed = {c.id for c in self.directory.acting_candidates(pending["identity_id"])}
        if person_id not in allowed:
            raise LoginPageError("acting_not_allowed")
        self._save_pending(iid, acting_person_id=person_id)
        return self._open_session(iid)

    def consent(self, iid: str, csrf: str, allow: bool, cookie: str | None) -> Redirect:
        """Record the user's consent decision and finish (or deny) the request."""
        self.check_csrf(iid, csrf)
        _row, request = self._load_interaction(iid)
        session = self.session_for_cookie(cookie)
        client = self.clients.find(request.client_id)
        if session is None or client is None:
            raise AuthorizationPageError("your session has ended; start again")
        self._finish_interaction(iid)
        if not allow:
            return Redirect(self._error_url(request, "access_denied", "the user declined"))
        now = self.now()
        with self.db.transaction() as tx:
            consent = tx.get(OidcConsentRow, (session.identity_id, client.client_id))
            scopes = set(request.scope) - {"openid"}
            if consent is None:
                tx.add(
                    OidcConsentRow(
                        identity_id=session.identity_id,
                        client_id=client.client_id,
                        scopes=" ".join(sorted(scopes)),
                        updated_at=now,
                    )
                )
            else:
                consent.scopes = " ".join(sorted(scopes | set(consent.scopes.split())))
                consent.updated_at = now
            audit.append(
                tx,
                actor=f"user:{session.identity_id}",
                action="oidc.consent",
                target=f"oidc-client:{client.client_id}",
                details={"scopes": sorted(scopes)},
            )
        return Redirect(self._issue_code(request, client, session))

    def _finish_interaction(self, iid: str) -> None:
        with self.db.transaction() as tx:
            tx.execute(delete(OidcInteractionRow).where(OidcInteractionRow.id == iid))

    def _logged_in(
        self, iid: str, identity_id: str, acr: str, amr: list[str], needs_acting: bool
    ) -> Redirect | ShowInteraction:
        self._save_pending(
            iid,
            identity_id=identity_id,
            acr=acr,
            amr=amr,
            auth_time=self.now().timestamp(),
            needs_acting=needs_acting,
            acting_person_id=None,
        )
        if needs_acting:
            return ShowInteraction(iid)
        return self._open_session(iid)

    def _open_session(self, iid: str) -> Redirect | ShowInteraction:
        row, request = self._load_interaction(iid)
        pending = self._pending(row)
        cookie = secrets.token_urlsafe(32)
        sid = secrets.token_urlsafe(16)
        now = self.now()
        auth_time = datetime.fromtimestamp(pending["auth_time"], UTC).replace(microsecond=0)
        with self.db.transaction() as tx:
            tx.add(
                OidcSessionRow(
                    sid=sid,
                    cookie_hash=hash_secret(cookie),
                    identity_id=pending["identity_id"],
                    acting_person_id=pending.get("acting_person_id"),
                    auth_time=auth_time,
                    acr=pending["acr"],
                    amr=" ".join(pending["amr"]),
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.config.session_ttl),
                    ended_at=None,
                )
            )
            audit.append(
                tx,
                actor=f"user:{pending['identity_id']}",
                action="oidc.login",
                target=f"oidc-session:{sid}",
                details={
                    "acr": pending["acr"],
                    "amr": pending["amr"],
                    "acting_person": pending.get("acting_person_id"),
                },
            )
        session = SessionInfo(
            sid,
            pending["identity_id"],
            pending.get("acting_person_id"),
            auth_time,
            pending["acr"],
            tuple(pending["amr"]),
        )
        client = self.clients.find(request.client_id)
        if client is None:
            raise AuthorizationPageError("unknown client")
        outcome = self._decide(request, client, session, fresh=True, interaction_id=iid)
        if isinstance(outcome, Redirect):
            self._finish_interaction(iid)
            return Redirect(outcome.url, session_cookie=cookie)
        return ShowInteractionWithCookie(outcome.interaction_id, cookie)

    # ============================================================================ validation

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
        grant_id = checked.grant_id
        fast = self.fast
        with fast.read() as cur:
            cur.execute(
                fast.sql(_SQL_VALIDATE),
                {"cid": checked.client_id, "jti": checked.jti, "gid": grant_id or ""},
            )
            found = cur.fetchone()
        if not found[0] or found[1] or (grant_id is not None and not found[2]):
            raise InvalidToken("revoked")
        return TokenInfo(checked.claims, grant_id, checked.client_id, checked.scopes)

    def verify_id_token_hint(self, token: str) -> dict[str, Any]:
        """An ID token we issued (expired is fine: it is only a hint for logout)."""
        header, claims = self._verify_our_jwt(token)
        if header.get("typ") not in (None, "JWT") or claims.get("iss") != self.config.issuer:
            raise InvalidToken("not our ID token")
        if not isinstance(claims.get("aud"), str | list) or not isinstance(claims.get("sub"), str):
            raise InvalidToken("malformed ID token")
        return claims

    # ============================================================================ userinfo

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

    # ============================================================================ introspection

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

    # ============================================================================ revocation

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

    # ============================================================================ logout

    def end_session(
        self,
        params: Mapping[str, str],
        cookie: str | None,
        *,
        confirmed: bool = False,
    ) -> LogoutOutcome:
        """RP-initiated logout (OIDC RP-Initiated Logout 1.0).

        With a valid ``id_token_hint`` for the current session (or a confirmed form post) the
        session ends; ``post_logout_redirect_uri`` must be registered for the hinted client.
        Raises :class:`AuthorizationPageError` for a bad hint or redirect URI, and
        :class:`ConfirmLogout` when the user has to confirm.
        """
        hint = params.get("id_token_hint", "")
        client: Client | None = None
        hint_claims: dict[str, Any] | None = None
        if hint:
            try:
                hint_claims = self.verify_id_token_hint(hint)
            except InvalidToken:
                raise AuthorizationPageError("the id_token_hint is not valid") from None
            aud = hint_claims["aud"]
            client = self.clients.find(aud if isinstance(aud, str) else aud[0])
        elif params.get("client_id"):
            client = self.clients.find(params["client_id"])
        if (
            params.get("client_id")
            and client is not None
            and (params["client_id"] != client.client_id)
        ):
            raise AuthorizationPageError("client_id does not match the id_token_hint")
        redirect: str | None = None
        target = params.get("post_logout_redirect_uri", "")
        if target:
            if client is None or target not in client.post_logout_redirect_uris:
                raise AuthorizationPageError("the post_logout_redirect_uri is not registered")
            redirect = _add_query(target, {"state": params.get("state", "")})
        session = self.session_for_cookie(cookie)
        if session is None:
            return LogoutOutcome(redirect, (), logged_out=False)
        matches = hint_claims is not None and hint_claims.get("sid") == session.sid
        if not (matches or confirmed):
            raise ConfirmLogout(self.csrf_for_session(cookie or ""))
        notices = self._end(session, actor=f"user:{session.identity_id}")
        return LogoutOutcome(redirect, notices)

    def _end(self, session: SessionInfo, *, actor: str) -> tuple[LogoutNotice, ...]:
        self.ensure_keys()
        now = self.now()
        with self.db.transaction() as tx:
            tx.execute(
                update(OidcSessionRow).where(OidcSessionRow.sid == session.sid).values(ended_at=now)
            )
            grants = list(tx.scalars(select(OidcGrantRow).where(OidcGrantRow.sid == session.sid)))
            for grant in grants:
                if "offline_access" not in grant.scope.split():
                    self._revoke_grant(tx, grant.id, "logout", now)
            client_ids = list(
                tx.scalars(
                    select(OidcSessionClientRow.client_id).where(
                        OidcSessionClientRow.sid == session.sid
                    )
                )
            )
            audit.append(
                tx,
                actor=actor,
                action="oidc.logout",
                target=f"oidc-session:{session.sid}",
                details={"clients": client_ids},
            )
        subs = {g.client_id: g.claims_sub for g in grants}
        notices: list[LogoutNotice] = []
        for client_id in client_ids:
            client = self.clients.find(client_id)
            if client is None or not client.backchannel_logout_uri:
                continue
            notices.append(
                LogoutNotice(
                    client_id,
                    client.backchannel_logout_uri,
                    self.logout_token(client, session.sid, subs.get(client_id, "")),
                )
            )
        return tuple(notices)

    def logout_token(self, client: Client, sid: str, sub: str) -> str:
        """A back-channel logout token (OIDC Back-Channel Logout 1.0 §2.4)."""
        key = self.keys.active(client.id_token_signing_alg)
        iat = int(self.now().timestamp())
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "aud": client.client_id,
            "iat": iat,
            "exp": iat + 120,
            "jti": secrets.token_urlsafe(16),
            "events": {LOGOUT_EVENT: {}},
            "sid": sid,
        }
        if sub:
            claims["sub"] = sub
        return sign_jwt(
            self.keystore,
            key.keystore_key_id,
            alg=key.alg,
            kid=key.kid,
            claims=claims,
            typ="logout+jwt",
        )

    # ============================================================================ principals

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
        with self.db.read() as session:
            grant = session.get(OidcGrantRow, info.grant_id)
        if grant is None:
            raise Unauthenticated("the bearer token is not valid")
        ident = self.directory.identity(grant.identity_id)
        if ident is None or ident.status != "active":
            raise Unauthenticated("the identity behind the token is not active")
        if ident.kind == "legal_person":
            return Principal(
                kind="user",
                subject=ident.id,
                citizen_id=grant.acting_person_id,
                legal_person_id=ident.id,
            )
        roles = self.directory.staff_roles(ident.id) if ident.kind == "staff" else frozenset()
        return Principal(
            kind="user",
            subject=ident.id,
            roles=roles,
            citizen_id=ident.id if ident.kind == "citizen" else None,
        )


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


class RedirectableError(OAuthError):
    """An authorization error that is safe to send back to the (registered) redirect URI."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str) -> None:
        super().__init__(error, description)
        self.redirect_uri = redirect_uri
        self.state = state

    def url(self, issuer: str) -> str:
        """The redirect carrying the error."""
        return _add_query(
            self.redirect_uri,
            {
                "error": self.error,
                "error_description": self.description,
                "state": self.state,
                "iss": issuer,
            },
        )


class LoginPageError(Exception):
    """Show the login page again with a generic message code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class ConfirmLogout(Exception):
    """Ask the user to confirm logout (no valid id_token_hint for this session)."""

    def __init__(self, csrf: str) -> None:
        super().__init__("confirm logout")
        self.csrf = csrf


@dataclass(frozen=True)
class ShowInteractionWithCookie(ShowInteraction):
    """Continue in the interaction pages, and set the new session cookie now."""

    session_cookie: str = field(default="")


def on_identity_status_change(session: Any, identity: Any, _before: Any, _reason: str) -> None:
    """Registry status listener: a suspended or cancelled identity loses its sessions and grants.

    Runs inside the registry's status-change transaction. Access tokens stop validating at once
    (their grant is revoked); ``principal_for_token`` and userinfo also check the status.
    """
    status = getattr(identity.status, "value", identity.status)
    if status == "active":
        return
    now = _now()
    session.execute(
        update(OidcSessionRow)
        .where(OidcSessionRow.identity_id == identity.id, OidcSessionRow.ended_at.is_(None))
        .values(ended_at=now)
    )
    grant_ids = list(
        session.scalars(
            select(OidcGrantRow.id).where(
                OidcGrantRow.identity_id == identity.id, OidcGrantRow.revoked_at.is_(None)
            )
        )
    )
    if grant_ids:
        session.execute(
            update(OidcGrantRow)
            .where(OidcGrantRow.id.in_(grant_ids))
            .values(revoked_at=now, revoke_reason=f"identity_{status}")
        )
        session.execute(
            update(OidcRefreshTokenRow)
            .where(OidcRefreshTokenRow.grant_id.in_(grant_ids))
            .where(OidcRefreshTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
