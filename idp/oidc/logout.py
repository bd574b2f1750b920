"""Logout: RP-initiated logout, ending an SSO session, and back-channel logout tokens.

Ending a session revokes its grants (except ``offline_access`` ones) in one write transaction
with its audit record, and yields a :class:`LogoutNotice` per client with a back-channel logout
URI. :class:`Logout` is mixed into :class:`idp.oidc.provider.Provider`; the attributes it uses are
the provider's (declared below for the type checker).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from govtrust import audit
from govtrust.db import Database
from hsm import KeyStore
from idp.oidc.authorization import add_query
from idp.oidc.clients import Client, ClientRegistry
from idp.oidc.config import ProviderConfig
from idp.oidc.errors import AuthorizationPageError, InvalidToken
from idp.oidc.keys import SigningKeys, sign_jwt
from idp.oidc.models import OidcGrantRow, OidcSessionClientRow, OidcSessionRow
from idp.oidc.sessions import SessionInfo

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


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


class ConfirmLogout(Exception):
    """Ask the user to confirm logout (no valid id_token_hint for this session)."""

    def __init__(self, csrf: str) -> None:
        super().__init__("confirm logout")
        self.csrf = csrf


class Logout:
    """Ending sessions, mixed into the provider."""

    db: Database
    config: ProviderConfig
    keystore: KeyStore
    clients: ClientRegistry
    keys: SigningKeys
    now: Callable[[], datetime]
    ensure_keys: Callable[[], None]
    session_for_cookie: Callable[[str | None], SessionInfo | None]
    csrf_for_session: Callable[[str], str]
    verify_id_token_hint: Callable[[str], dict[str, Any]]
    _revoke_grant: Callable[[Any, str, str, datetime], None]

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
            redirect = add_query(target, {"state": params.get("state", "")})
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
