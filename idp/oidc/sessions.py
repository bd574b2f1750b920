"""SSO sessions: the session behind a browser cookie, its CSRF token, and ending sessions.

A session is opened by the interaction pages (:mod:`idp.oidc.interaction`) and ended by logout
(:mod:`idp.oidc.logout`) or, with its grants, when the identity is suspended or cancelled
(:func:`on_identity_status_change`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from govtrust.db import Database, as_utc
from idp.oidc.clients import hash_secret
from idp.oidc.models import OidcGrantRow, OidcRefreshTokenRow, OidcSessionRow

CSRF_PURPOSE = "idp/oidc-csrf/v1"


@dataclass(frozen=True)
class SessionInfo:
    """The SSO session behind a browser cookie."""

    sid: str
    identity_id: str
    acting_person_id: str | None
    auth_time: datetime
    acr: str
    amr: tuple[str, ...]


def session_for_cookie(
    db: Database, now: Callable[[], datetime], cookie: str | None
) -> SessionInfo | None:
    """The live session behind a session cookie, if any (``now`` is the provider's clock)."""
    if not cookie:
        return None
    with db.read() as session:
        row = session.scalar(
            select(OidcSessionRow).where(OidcSessionRow.cookie_hash == hash_secret(cookie))
        )
        if row is None or row.ended_at is not None or as_utc(row.expires_at) <= now():
            return None
        return SessionInfo(
            row.sid,
            row.identity_id,
            row.acting_person_id,
            as_utc(row.auth_time),
            row.acr,
            tuple(row.amr.split()),
        )


def csrf_for_session(csrf_key: bytes, cookie: str) -> str:
    """A CSRF token bound to the session cookie (for the logout confirmation form)."""
    return hmac.new(csrf_key, cookie.encode(), hashlib.sha256).hexdigest()


def on_identity_status_change(session: Any, identity: Any, _before: Any, _reason: str) -> None:
    """Registry status listener: a suspended or cancelled identity loses its sessions and grants.

    Runs inside the registry's status-change transaction. Access tokens stop validating at once
    (their grant is revoked); ``principal_for_token`` and userinfo also check the status.
    """
    status = getattr(identity.status, "value", identity.status)
    if status == "active":
        return
    end_identity_sessions(session, identity.id, datetime.now(UTC), f"identity_{status}")


def end_identity_sessions(session: Any, identity_id: str, now: datetime, reason: str) -> int:
    """End every SSO session of ``identity_id`` and revoke its live grants (their tokens stop
    validating, the console sessions on them end) in the caller's transaction; the number of
    grants revoked. Used by the status listener and by log-out-everywhere."""
    session.execute(
        update(OidcSessionRow)
        .where(OidcSessionRow.identity_id == identity_id, OidcSessionRow.ended_at.is_(None))
        .values(ended_at=now)
    )
    grant_ids = list(
        session.scalars(
            select(OidcGrantRow.id).where(
                OidcGrantRow.identity_id == identity_id, OidcGrantRow.revoked_at.is_(None)
            )
        )
    )
    if grant_ids:
        session.execute(
            update(OidcGrantRow)
            .where(OidcGrantRow.id.in_(grant_ids))
            .values(revoked_at=now, revoke_reason=reason)
        )
        session.execute(
            update(OidcRefreshTokenRow)
            .where(OidcRefreshTokenRow.grant_id.in_(grant_ids))
            .where(OidcRefreshTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return len(grant_ids)


@dataclass(frozen=True)
class LoginSummary:
    """One live SSO session of an identity, as its owner sees it (no secret)."""

    sid_hint: str  # the first characters of the session id, to tell sessions apart
    auth_time: datetime
    amr: tuple[str, ...]
    acr: str
    expires_at: datetime


def live_logins(db: Database, identity_id: str, now: datetime) -> list[LoginSummary]:
    """The identity's live SSO sessions, newest first."""
    with db.read() as session:
        rows = session.scalars(
            select(OidcSessionRow)
            .where(OidcSessionRow.identity_id == identity_id, OidcSessionRow.ended_at.is_(None))
            .order_by(OidcSessionRow.auth_time.desc())
        )
        return [
            LoginSummary(
                row.sid[:8],
                as_utc(row.auth_time),
                tuple(row.amr.split()),
                row.acr,
                as_utc(row.expires_at),
            )
            for row in rows
            if as_utc(row.expires_at) > now
        ]
