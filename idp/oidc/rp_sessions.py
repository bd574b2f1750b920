"""First-party relying parties (the web console): their registration and their sessions.

The console logs in through this provider like any portal — a confidential client, the
authorization code with PKCE — but it is part of govtrust, so its client is registered by the
serving process itself (:func:`ensure_first_party_client`) with a secret derived from the
master key (every worker derives the same one; nothing to hand out or store).

After the code exchange the console keeps a server-side session (:class:`RpSessions`): a
random cookie whose digest finds the row, the OIDC grant behind it (a revoked grant — SSO
logout, identity suspended — ends it), a synchroniser CSRF token, and the times the idle and
absolute timeouts run from. The PKCE verifier and nonce of a login in flight are derived from
its ``state`` (:func:`login_secrets`), so the only thing the browser carries is the state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import AlreadyExists
from govtrust.fastsql import PointReader, stored_datetime
from govtrust.principal import Principal
from idp.identity_status import identity_join, staff_roles_join, staff_roles_of
from idp.oidc.clients import Client, ClientRegistry, hash_secret
from idp.oidc.grant_state import grant_principal
from idp.oidc.models import OidcClientRow, OidcRpSessionRow
from idp.oidc.sessions import end_identity_sessions

FIRST_PARTY_PURPOSE = "idp/oidc-first-party/v1"
SYSTEM = Principal("system", "first-party-clients", frozenset({"admin"}))
# last_seen_at is written at most this often per session (reads stay reads); the idle timeout
# is therefore exact to within this many seconds
TOUCH_SECONDS = 30

# A request's whole session check in one point read: the session row, its grant, the grant's
# identity (status, kind, name), the person acting for a legal person (name) and a staff
# member's roles; the registry's halves are its fragments (idp.identity_status).
_IDENTITY_COLUMNS, _IDENTITY_JOIN = identity_join("g.identity_id", "i")
_ACTING_COLUMNS, _ACTING_JOIN = identity_join("g.acting_person_id", "a")
_ROLES_COLUMN, _ROLES_JOIN = staff_roles_join("i.id", "st")
_RESUME_SQL = (
    "SELECT s.client_id, s.grant_id, s.identity_id, s.sid, s.id_token, s.csrf, s.created_at,"  # noqa: S608 - fixed fragments, no values
    " s.last_seen_at, s.ended_at, g.id, g.revoked_at, g.acting_person_id,"
    f" {_IDENTITY_COLUMNS}, {_ACTING_COLUMNS}, {_ROLES_COLUMN}"
    " FROM oidc_rp_sessions s LEFT JOIN oidc_grants g ON g.id = s.grant_id"
    f"{_IDENTITY_JOIN}{_ACTING_JOIN}{_ROLES_JOIN}"
    " WHERE s.cookie_hash = ?"
)


def _mac(key: bytes, *parts: str) -> bytes:
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def first_party_secret(key: bytes, client_id: str) -> str:
    """The client secret of a first-party client, derived from ``key`` (the master key's
    :data:`FIRST_PARTY_PURPOSE` key): the same in every worker, never stored in clear."""
    return _b64(_mac(key, "client-secret", client_id))


def login_secrets(key: bytes, state: str) -> tuple[str, str, str]:
    """``(code_verifier, code_challenge, nonce)`` of the login carrying ``state``: derived, so
    the console stores nothing for a login in flight and a state it did not make is useless."""
    verifier = _b64(_mac(key, "pkce", state))
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge, _b64(_mac(key, "nonce", state))[:32]


def ensure_first_party_client(
    registry: ClientRegistry,
    key: bytes,
    *,
    client_id: str,
    client_name: str,
    redirect_uri: str,
    post_logout_redirect_uri: str,
) -> str:
    """Register the first-party client (or bring its redirect URIs and secret up to date);
    returns its secret. Idempotent and safe to race from several workers."""
    secret = first_party_secret(key, client_id)
    existing = registry.find(client_id)
    if existing is None:
        try:
            registry.register(
                SYSTEM,
                client_name=client_name,
                client_id=client_id,
                redirect_uris=[redirect_uri],
                post_logout_redirect_uris=[post_logout_redirect_uri],
                grant_types=["authorization_code"],
                allowed_scopes=["openid", "profile"],
                client_secret=secret,
            )
        except (AlreadyExists, IntegrityError):  # another worker registered it first
            existing = registry.find(client_id)
    if existing is not None and not _current(
        existing, secret, redirect_uri, post_logout_redirect_uri
    ):
        _update(registry.db, client_id, secret, redirect_uri, post_logout_redirect_uri)
    return secret


def _current(client: Client, secret: str, redirect_uri: str, post_logout: str) -> bool:
    return (
        client.check_secret(secret)
        and client.redirect_uris == (redirect_uri,)
        and client.post_logout_redirect_uris == (post_logout,)
    )


def _update(db: Database, client_id: str, secret: str, redirect_uri: str, post_logout: str) -> None:
    import json

    with db.transaction() as session:
        row = session.get(OidcClientRow, client_id)
        if row is None:
            return
        row.secret_hash = hash_secret(secret)
        row.redirect_uris = json.dumps([redirect_uri])
        row.post_logout_redirect_uris = json.dumps([post_logout])
        audit.append(
            session,
            actor=SYSTEM.actor,
            action="oidc.client.update",
            target=f"oidc-client:{client_id}",
            details={"redirect_uris": [redirect_uri], "first_party": True},
        )


@dataclass(frozen=True)
class RpSession:
    """A live console session: its grant (the principal comes from it) and CSRF token."""

    grant_id: str
    identity_id: str
    sid: str
    id_token: str
    csrf: str
    created_at: datetime


@dataclass(frozen=True)
class Resumed:
    """A live session with what its grant gives: the principal (roles as the registry has
    them now) and the names the pages show (the identity's; the acting person's, or "")."""

    session: RpSession
    principal: Principal
    name: str
    acting_name: str


@dataclass(frozen=True)
class Lookup:
    """What :meth:`RpSessions.look_up` read: the live session (or None), or why it is not live
    (``expired``), and the write :meth:`RpSessions.settle` owes (``end``: the row to end, with
    the audited reason; ``touch``: the idle clock to restart)."""

    digest: bytes
    now: datetime
    resumed: Resumed | None
    expired: str = ""
    end: str = ""
    touch: bool = False

    @property
    def writes(self) -> bool:
        """Whether settling it writes."""
        return bool(self.end) or self.touch


class SessionExpired(Exception):
    """The cookie names a session past its idle or absolute timeout, ended, or whose grant is
    revoked or whose identity is no longer active (the session is ended then)."""


class RpSessions:
    """Server-side sessions of a first-party client, with idle and absolute timeouts."""

    def __init__(
        self,
        db: Database,
        client_id: str,
        now: Callable[[], datetime],
        *,
        idle_seconds: int,
        absolute_seconds: int,
    ) -> None:
        self.db = db
        self.client_id = client_id
        self.now = now
        self.idle = timedelta(seconds=idle_seconds)
        self.absolute = timedelta(seconds=absolute_seconds)
        self.reader = PointReader(db.engine)
        self._resume_sql = self.reader.sql(_RESUME_SQL)

    def close(self) -> None:
        """Close the point reader's connections."""
        self.reader.close()

    def open(self, *, grant_id: str, identity_id: str, sid: str, id_token: str) -> str:
        """Open a session for a grant just obtained; returns the cookie value (only its digest
        is stored)."""
        cookie = secrets.token_urlsafe(32)
        now = self.now()
        with self.db.transaction() as session:
            session.add(
                OidcRpSessionRow(
                    cookie_hash=hash_secret(cookie),
                    client_id=self.client_id,
                    grant_id=grant_id,
                    identity_id=identity_id,
                    sid=sid,
                    id_token=id_token,
                    csrf=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen_at=now,
                    ended_at=None,
                )
            )
            audit.append(
                session,
                actor=f"user:{identity_id}",
                action="console.login",
                target=f"oidc-grant:{grant_id}",
                details={"client": self.client_id},
            )
        return cookie

    def resume(self, cookie: str | None) -> Resumed | None:
        """The live session behind ``cookie`` (its idle clock restarted) and its grant's
        principal, read fresh in one point query (a logout, a revoked grant, a suspension or a
        role change shows in the next request); ``None`` for no or an unknown cookie;
        :class:`SessionExpired` past a timeout, or once the grant is revoked or its identity
        inactive (the row is ended then). :meth:`look_up` then :meth:`settle`."""
        return self.settle(self.look_up(cookie))

    def look_up(self, cookie: str | None) -> Lookup:
        """The read half of :meth:`resume`: one point query, no write (on SQLite a local read
        cheap enough for the event loop); :meth:`settle` it."""
        if not cookie:
            return Lookup(b"", self.now(), None)
        digest = hash_secret(cookie)
        now = self.now()
        row = self.reader.fetchone(self._resume_sql, (digest,))
        if row is None or row[0] != self.client_id:
            return Lookup(digest, now, None)
        created_at = stored_datetime(row[6])
        found = RpSession(row[1], row[2], row[3], row[4], row[5], created_at)
        last_seen = stored_datetime(row[7])
        if row[8] is not None:
            return Lookup(digest, now, None, expired="the session has ended")
        if now - last_seen > self.idle or now - created_at > self.absolute:
            return Lookup(digest, now, None, expired="the session timed out", end="timeout")
        grant_id, revoked_at, acting_id = row[9], row[10], row[11]
        ident_id, kind, name, _masked, status, _level = row[12:18]
        if grant_id is None or revoked_at is not None or ident_id is None or status != "active":
            expired = "the session's grant is revoked or its identity inactive"
            return Lookup(digest, now, None, expired=expired, end="logout")
        principal = grant_principal(kind, ident_id, acting_id, staff_roles_of(row[24]))
        resumed = Resumed(found, principal, name, row[20] or "")
        touch = (now - last_seen).total_seconds() >= TOUCH_SECONDS
        return Lookup(digest, now, resumed, touch=touch)

    def settle(self, lookup: Lookup) -> Resumed | None:
        """The write half of :meth:`resume`: end a timed-out or revoked session, or restart
        the idle clock (at most every :data:`TOUCH_SECONDS`); :class:`SessionExpired` for a
        session that is not live. Writes only when ``lookup.writes``."""
        if lookup.end:
            self._end(lookup.digest, lookup.now, lookup.end)
        if lookup.expired:
            raise SessionExpired(lookup.expired)
        if lookup.touch:
            with self.db.transaction() as session:
                session.execute(
                    update(OidcRpSessionRow)
                    .where(OidcRpSessionRow.cookie_hash == lookup.digest)
                    .values(last_seen_at=lookup.now)
                )
        return lookup.resumed

    def end(self, cookie: str | None) -> RpSession | None:
        """Log out: end the session behind ``cookie``; the ended session (for the RP-initiated
        logout at the provider), or ``None``."""
        if not cookie:
            return None
        digest = hash_secret(cookie)
        with self.db.read() as session:
            row = session.get(OidcRpSessionRow, digest)
            if row is None or row.ended_at is not None:
                return None
            found = RpSession(
                row.grant_id,
                row.identity_id,
                row.sid,
                row.id_token,
                row.csrf,
                as_utc(row.created_at),
            )
        self._end(digest, self.now(), "logout")
        return found

    def _end(self, digest: bytes, now: datetime, why: str) -> None:
        with self.db.transaction() as session:
            row = session.get(OidcRpSessionRow, digest)
            if row is None or row.ended_at is not None:
                return
            row.ended_at = now
            audit.append(
                session,
                actor=f"user:{row.identity_id}",
                action=f"console.{why}",
                target=f"oidc-grant:{row.grant_id}",
            )

    def end_everywhere(self, identity_id: str) -> int:
        """Log out everywhere: end every console session and SSO session of ``identity_id``
        and revoke its grants (tokens given to other portals stop validating), audited in one
        transaction; the number of grants revoked."""
        now = self.now()
        with self.db.transaction() as session:
            session.execute(
                update(OidcRpSessionRow)
                .where(
                    OidcRpSessionRow.identity_id == identity_id,
                    OidcRpSessionRow.ended_at.is_(None),
                )
                .values(ended_at=now)
            )
            revoked = end_identity_sessions(session, identity_id, now, "logout_everywhere")
            audit.append(
                session,
                actor=f"user:{identity_id}",
                action="console.logout_everywhere",
                target=f"identity:{identity_id}",
                details={"grants_revoked": revoked},
            )
        return revoked

    def live_count(self, identity_id: str) -> int:
        """How many sessions of ``identity_id`` are open (for tests and the citizen page)."""
        with self.db.read() as session:
            rows = session.scalars(
                select(OidcRpSessionRow.cookie_hash).where(
                    OidcRpSessionRow.identity_id == identity_id,
                    OidcRpSessionRow.ended_at.is_(None),
                )
            )
            return len(list(rows))


def check_csrf(session: RpSession, presented: str) -> bool:
    """Whether a form's CSRF token is the session's synchroniser token (constant time)."""
    return bool(presented) and hmac.compare_digest(session.csrf, presented)
