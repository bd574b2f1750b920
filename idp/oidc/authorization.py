"""Authorization requests: parsing one, deciding what it needs, and issuing the code.

:func:`Authorization.parse_authorization` validates a request (page errors while the redirect is
not yet trusted, :class:`RedirectableError` after); :meth:`Authorization.authorize` then decides:
a login or consent interaction (:mod:`idp.oidc.interaction`), an error redirect for
``prompt=none``, or a code. Issuing a code opens the grant (the token family) with its audit
record in one write transaction. :class:`Authorization` is mixed into
:class:`idp.oidc.provider.Provider`; the attributes it uses are the provider's (declared below
for the type checker).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from govtrust import audit
from govtrust.db import Database
from idp.oidc.clients import Client, ClientRegistry, hash_secret
from idp.oidc.config import ProviderConfig, acr_level
from idp.oidc.directory import RegistryDirectory
from idp.oidc.errors import AuthorizationPageError, InvalidToken, OAuthError
from idp.oidc.models import OidcAuthCodeRow, OidcConsentRow, OidcGrantRow, OidcSessionClientRow
from idp.oidc.sessions import SessionInfo

if TYPE_CHECKING:
    from idp.oidc.interaction import InteractionStore


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
class Redirect:
    """Send the browser to ``url``; optionally set (or clear, with "") the session cookie."""

    url: str
    session_cookie: str | None = None


@dataclass(frozen=True)
class ShowInteraction:
    """Send the browser to the interaction pages (login, acting person, consent)."""

    interaction_id: str


def add_query(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` added to its query (empty values left out)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((k, v) for k, v in params.items() if v != "")
    return urlunsplit(parts._replace(query=urlencode(query)))


class RedirectableError(OAuthError):
    """An authorization error that is safe to send back to the (registered) redirect URI."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str) -> None:
        super().__init__(error, description)
        self.redirect_uri = redirect_uri
        self.state = state

    def url(self, issuer: str) -> str:
        """The redirect carrying the error."""
        return add_query(
            self.redirect_uri,
            {
                "error": self.error,
                "error_description": self.description,
                "state": self.state,
                "iss": issuer,
            },
        )


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


class Authorization:
    """The authorization endpoint's decisions, mixed into the provider."""

    db: Database
    config: ProviderConfig
    clients: ClientRegistry
    directory: RegistryDirectory
    now: Callable[[], datetime]
    interactions: InteractionStore
    session_for_cookie: Callable[[str | None], SessionInfo | None]
    verify_id_token_hint: Callable[[str], dict[str, Any]]

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
            return ShowInteraction(interaction_id or self.interactions.new(request))
        if self._needs_consent(request, session.identity_id) and not (
            interaction_id and self.interactions.consented_in(interaction_id)
        ):
            if "none" in request.prompt:
                return Redirect(self._error_url(request, "consent_required", "consent needed"))
            iid = interaction_id or self.interactions.new(request)
            self.interactions.set_stage(iid, consent=True)
            return ShowInteraction(iid)
        return Redirect(self._issue_code(request, client, session))

    def _error_url(self, request: AuthRequest, error: str, description: str) -> str:
        return add_query(
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
        return add_query(
            request.redirect_uri, {"code": code, "state": request.state, "iss": self.config.issuer}
        )
