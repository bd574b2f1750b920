"""OIDC grant state for other packages: whether a grant is revoked, and whom it is for; the
principal a live grant gives (:func:`grant_principal`).

``oidc_grants`` is the provider's table; the verification service reads it only through
:class:`GrantStateLookup` (point reads on a driver-level fast reader).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from govtrust.fastsql import PointReader
from govtrust.principal import Principal

_GRANT_SQL = "SELECT id, identity_id, acting_person_id, revoked_at FROM oidc_grants WHERE id = ?"
_SESSION_GRANT_SQL = (
    "SELECT id, identity_id, acting_person_id, revoked_at FROM oidc_grants"
    " WHERE sid = ? AND client_id = ? ORDER BY revoked_at IS NULL DESC, created_at DESC"
)


class GrantState(NamedTuple):
    """A grant's id, its subject, the person acting (for an agent login) and its revocation."""

    id: str
    identity_id: str | None
    acting_person_id: str | None
    revoked_at: datetime | str | None

    @property
    def revoked(self) -> bool:
        """Whether the grant has been revoked."""
        return self.revoked_at is not None


class TokenState(NamedTuple):
    """Whether a token (or its grant or session) is revoked, and whom it is for: the identity
    and the person acting for it (None when no person is behind the token)."""

    revoked: bool
    identity_id: str | None
    acting_person_id: str | None


class GrantStateLookup:
    """Point reads of grant state, fresh on every call (a revocation shows at once)."""

    def __init__(self, reader: PointReader) -> None:
        self._reader = reader
        self._by_id = reader.sql(_GRANT_SQL)
        self._by_session = reader.sql(_SESSION_GRANT_SQL)

    def by_id(self, grant_id: str) -> GrantState | None:
        """The grant ``grant_id``; None when there is none."""
        row = self._reader.fetchone(self._by_id, (grant_id,))
        return None if row is None else GrantState(*row)

    def by_session(self, sid: str, client_id: str) -> GrantState | None:
        """The grant of session ``sid`` for ``client_id`` (a live one before revoked ones, the
        newest first); None when there is none."""
        row = self._reader.fetchone(self._by_session, (sid, client_id))
        return None if row is None else GrantState(*row)


def grant_principal(
    kind: str, identity_id: str, acting_person_id: str | None, staff_roles: frozenset[str]
) -> Principal:
    """The principal of a live grant of an active identity of ``kind``: a legal person with the
    person acting for it, a citizen as itself, a staff member with ``staff_roles`` (ignored for
    anyone else)."""
    if kind == "legal_person":
        return Principal(
            kind="user",
            subject=identity_id,
            citizen_id=acting_person_id,
            legal_person_id=identity_id,
        )
    return Principal(
        kind="user",
        subject=identity_id,
        roles=staff_roles if kind == "staff" else frozenset(),
        citizen_id=identity_id if kind == "citizen" else None,
    )
