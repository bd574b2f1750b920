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
    now = datetime.now(UTC)
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
