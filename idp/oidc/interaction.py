"""Interactions: the login, acting-person and consent pages between authorize and the code.

:class:`InteractionStore` keeps an interaction's state (its request, CSRF token, certificate
challenge, and what the pages have learnt so far) in ``oidc_interactions``.
:class:`InteractionPages` handles the pages' form posts: password or certificate login, the choice
of the citizen acting for a legal person, and consent; a completed login opens the SSO session and
continues the authorization decision. It is mixed into :class:`idp.oidc.provider.Provider`; the
attributes it uses are the provider's (declared below for the type checker).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete

from govtrust import audit
from govtrust.db import Database, as_utc
from idp.oidc import certlogin
from idp.oidc.authorization import Authorization, AuthRequest, Redirect, ShowInteraction
from idp.oidc.clients import hash_secret
from idp.oidc.config import ACR_PREFIX, ProviderConfig
from idp.oidc.directory import ActingCandidate
from idp.oidc.errors import AuthorizationPageError
from idp.oidc.models import OidcConsentRow, OidcInteractionRow, OidcSessionRow
from idp.oidc.passwords import LoginFailed, PasswordLogin
from idp.oidc.sessions import SessionInfo


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
class ShowInteractionWithCookie(ShowInteraction):
    """Continue in the interaction pages, and set the new session cookie now."""

    session_cookie: str = field(default="")


class LoginPageError(Exception):
    """Show the login page again with a generic message code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class InteractionStore:
    """Interaction rows: create, load, record progress, finish (timed by the provider's clock)."""

    def __init__(self, db: Database, now: Callable[[], datetime], config: ProviderConfig) -> None:
        self.db = db
        self._now = now
        self.config = config

    def new(self, request: AuthRequest) -> str:
        """Start an interaction for ``request`` (dropping expired ones); its id."""
        iid = secrets.token_urlsafe(16)
        now = self._now()
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

    def load(self, iid: str) -> tuple[OidcInteractionRow, AuthRequest]:
        """A live interaction's row and request (page error once it has expired)."""
        with self.db.read() as session:
            row = session.get(OidcInteractionRow, iid)
        if row is None or as_utc(row.expires_at) <= self._now():
            raise AuthorizationPageError("this login page has expired; start again")
        data = json.loads(row.params)
        data["scope"], data["prompt"] = tuple(data["scope"]), tuple(data["prompt"])
        data["acr_values"] = tuple(data["acr_values"])
        return row, AuthRequest(**data)

    @staticmethod
    def pending(row: OidcInteractionRow) -> dict[str, Any]:
        """What the pages have recorded so far for this interaction."""
        return json.loads(row.pending) if row.pending else {}

    def save_pending(self, iid: str, **changes: Any) -> None:
        """Record ``changes`` in the interaction's pending state."""
        with self.db.transaction() as tx:
            row = tx.get(OidcInteractionRow, iid)
            if row is None:
                raise AuthorizationPageError("this login page has expired; start again")
            data = json.loads(row.pending) if row.pending else {}
            data.update(changes)
            row.pending = json.dumps(data)

    def set_stage(self, iid: str, *, consent: bool) -> None:
        """Move the interaction to (or away from) the consent page."""
        self.save_pending(iid, consent_stage=consent)

    def consented_in(self, iid: str) -> bool:
        """Whether the user consented within this interaction."""
        with self.db.read() as session:
            row = session.get(OidcInteractionRow, iid)
        return bool(row and self.pending(row).get("consented"))

    def finish(self, iid: str) -> None:
        """Delete the interaction (its request is done)."""
        with self.db.transaction() as tx:
            tx.execute(delete(OidcInteractionRow).where(OidcInteractionRow.id == iid))


class InteractionPages(Authorization):
    """The interaction pages' form posts, mixed into the provider."""

    passwords: PasswordLogin
    validator: certlogin.CertificateValidator

    def interaction_view(self, iid: str, *, error: str = "") -> InteractionView:
        """What to show for an interaction: login, acting-person choice or consent."""
        row, request = self.interactions.load(iid)
        client = self.clients.find(request.client_id)
        if client is None:
            raise AuthorizationPageError("unknown client")
        pending = self.interactions.pending(row)
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
        row, _request = self.interactions.load(iid)
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
        row, _request = self.interactions.load(iid)
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
        row, _request = self.interactions.load(iid)
        pending = self.interactions.pending(row)
        if not pending.get("needs_acting"):
            raise AuthorizationPageError("nothing to choose")
        allowed = {c.id for c in self.directory.acting_candidates(pending["identity_id"])}
        if person_id not in allowed:
            raise LoginPageError("acting_not_allowed")
        self.interactions.save_pending(iid, acting_person_id=person_id)
        return self._open_session(iid)

    def consent(self, iid: str, csrf: str, allow: bool, cookie: str | None) -> Redirect:
        """Record the user's consent decision and finish (or deny) the request."""
        self.check_csrf(iid, csrf)
        _row, request = self.interactions.load(iid)
        session = self.session_for_cookie(cookie)
        client = self.clients.find(request.client_id)
        if session is None or client is None:
            raise AuthorizationPageError("your session has ended; start again")
        self.interactions.finish(iid)
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

    def _logged_in(
        self, iid: str, identity_id: str, acr: str, amr: list[str], needs_acting: bool
    ) -> Redirect | ShowInteraction:
        self.interactions.save_pending(
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
        row, request = self.interactions.load(iid)
        pending = self.interactions.pending(row)
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
            self.interactions.finish(iid)
            return Redirect(outcome.url, session_cookie=cookie)
        return ShowInteractionWithCookie(outcome.interaction_id, cookie)
