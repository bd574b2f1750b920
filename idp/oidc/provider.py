"""The OpenID Connect provider: authorization, logins, sessions, codes and tokens.

Framework-free: the HTTP adapter parses requests into dicts and calls these methods (in a worker
thread, or through :meth:`Provider.token_endpoint` / :meth:`Provider.client_endpoint`, which
decide for themselves what runs inline and what goes to the caller's pool), then turns the
outcomes into responses. Every token-minting change happens in one write
transaction with its audit record, except the stateless client_credentials grant.

:class:`Provider` is the facade: it holds the shared state (database, key store, signing keys,
clients, directory, clock, configuration) and takes its behaviour from one module per concept:
:mod:`~idp.oidc.discovery`, :mod:`~idp.oidc.sessions`, :mod:`~idp.oidc.authorization`,
:mod:`~idp.oidc.interaction`, :mod:`~idp.oidc.grants` (the token endpoint),
:mod:`~idp.oidc.introspection` and :mod:`~idp.oidc.logout`.

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

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, Protocol, TypeVar

from govtrust.db import Database, write_gate
from govtrust.fastsql import FastSql
from hsm import KeyStore
from idp.oidc import certlogin, sessions
from idp.oidc.clients import ClientRegistry
from idp.oidc.config import ProviderConfig
from idp.oidc.directory import RegistryDirectory
from idp.oidc.discovery import discovery_document
from idp.oidc.errors import OAuthError
from idp.oidc.grants import TokenGrants, WriteWouldBlock
from idp.oidc.interaction import InteractionPages, InteractionStore
from idp.oidc.introspection import TokenIntrospection
from idp.oidc.keys import SigningKeys
from idp.oidc.logout import Logout
from idp.oidc.passwords import PasswordLogin
from idp.oidc.sessions import CSRF_PURPOSE, SessionInfo
from idp.oidc.tokens import TokenValidator

PAIRWISE_PURPOSE = "idp/oidc-pairwise/v1"


P = ParamSpec("P")
T = TypeVar("T")


class Offload(Protocol):
    """Runs a blocking call off the event loop (the adapter's thread pool) and awaits it."""

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...


def _now() -> datetime:
    return datetime.now(UTC)


class Provider(InteractionPages, TokenIntrospection, Logout, TokenGrants):
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
        self._write_lock: Any = write_gate(db.engine, "oidc-write")
        self.interactions = InteractionStore(db, lambda: self.now(), config)

    def ensure_keys(self) -> None:
        """Create the signing keys on first use (outside any write transaction)."""
        if not self._keys_ready:
            self.keys.ensure()
            self._keys_ready = True

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider metadata (OIDC Discovery §3)."""
        return discovery_document(self.config)

    def session_for_cookie(self, cookie: str | None) -> SessionInfo | None:
        """The live session behind a session cookie, if any."""
        return sessions.session_for_cookie(self.db, self.now, cookie)

    def csrf_for_session(self, cookie: str) -> str:
        """A CSRF token bound to the session cookie (for the logout confirmation form)."""
        return sessions.csrf_for_session(self._csrf_key, cookie)

    async def token_endpoint(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, offload: Offload
    ) -> dict[str, Any]:
        """:meth:`token` for an event-loop caller: inline when cheap, else through ``offload``."""
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials" or (
            grant_type == "refresh_token" and self.local_reads and "client_assertion" not in form
        ):
            # client_credentials is pure CPU (a cached client, one ES256 signature); a refresh on
            # SQLite adds a local read and a write of a few statements, made after the signing.
            # Either costs less than the thread hop. The loop never waits for the write lock: a
            # refresh that would goes on in the pool.
            try:
                return self.token(form, basic, wait=False)
            except WriteWouldBlock as busy:
                return await offload(busy.resume)
        return await offload(self.token, form, basic)

    def client_operation(
        self, method: str, form: Mapping[str, str], basic: tuple[str, str] | None
    ) -> dict[str, Any] | None:
        """Introspection (RFC 7662) or revocation (RFC 7009): authenticate the client and act.

        ``method`` is ``"introspect"`` or ``"revoke"``; revocation returns ``None``.
        """
        endpoint = self.config.endpoint(
            "/oidc/introspect" if method == "introspect" else "/oidc/revoke"
        )
        client = self.authenticate_client(form, basic, endpoint=endpoint)
        token_value = form.get("token", "")
        if not token_value:
            raise OAuthError("invalid_request", "token is required")
        if method == "introspect":
            if client.is_public:
                raise OAuthError("invalid_client", "public clients cannot introspect", status=401)
            return self.introspect(client, token_value)
        self.revoke(client, token_value)
        return None

    async def client_endpoint(
        self,
        method: str,
        form: Mapping[str, str],
        basic: tuple[str, str] | None,
        offload: Offload,
    ) -> dict[str, Any] | None:
        """:meth:`client_operation` for an event-loop caller, in at most one thread hop."""
        if method == "introspect" and self.local_reads and "client_assertion" not in form:
            # On SQLite an introspection is a cached secret check and one local indexed read,
            # cheaper than the thread hop; assertions (a replay record) and PostgreSQL (a network
            # round trip) go to the pool.
            return self.client_operation(method, form, basic)
        return await offload(self.client_operation, method, form, basic)
