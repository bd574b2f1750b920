"""Identity look-up for other packages: an identity's summary and status, read fresh; a legal
person's representative; the citizen behind a staff identity.

``idp_identities`` is the registry's table; other packages read it only through this module:
:class:`IdentityLookup` (one point read on a fast reader) or :func:`identity_join`, the fragment
an owner of another table joins into its own point query (one round trip, each package's SQL
naming only its own tables), and :func:`staff_roles_join`, the same for a staff member's roles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select

from govtrust.db import Database
from govtrust.fastsql import PointReader
from idp.models import IdentityRow, LegalPersonRow, StaffRow
from idp.types import IdentityKind, IdentityStatus, IdentitySummary

IDENTITY_COLUMNS = ("id", "kind", "name", "masked_identifier", "status", "assurance_level")
"""The columns of an identity row, in order (what :func:`identity_summary_of` reads)."""

_IDENTITY_SQL = (
    "SELECT id, kind, name, masked_identifier, status, assurance_level"
    " FROM idp_identities WHERE id = ?"
)


def identity_join(id_column: str, alias: str = "i", *, required: bool = False) -> tuple[str, str]:
    """``(columns, JOIN clause)`` adding the identity whose id is ``id_column`` (a column
    expression of the joining query, e.g. ``c.identity_id``) to another owner's point query;
    the columns are :data:`IDENTITY_COLUMNS`. A LEFT JOIN (all NULL when there is no such
    identity) unless ``required`` (an inner join: rows without one are skipped)."""
    columns = ", ".join(f"{alias}.{name}" for name in IDENTITY_COLUMNS)
    kind = "JOIN" if required else "LEFT JOIN"
    return columns, f" {kind} idp_identities {alias} ON {alias}.id = {id_column}"


def staff_roles_join(id_column: str, alias: str = "st") -> tuple[str, str]:
    """``(column, LEFT JOIN clause)`` adding the govtrust roles of the staff member whose id is
    ``id_column`` to another owner's point query (NULL for anyone who is not staff); read the
    column with :func:`staff_roles_of`."""
    return f"{alias}.roles", f" LEFT JOIN idp_staff {alias} ON {alias}.id = {id_column}"


def staff_roles_of(value: str | None) -> frozenset[str]:
    """A staff member's roles from the stored column (space-separated; empty for NULL)."""
    return frozenset((value or "").split())


def identity_summary_of(row: Sequence[Any] | None) -> IdentitySummary | None:
    """An identity summary from a row of :data:`IDENTITY_COLUMNS`; None for no row (or a NULL
    id) or values the registry would not write."""
    if row is None or row[0] is None:
        return None
    try:
        return IdentitySummary(
            id=row[0],
            kind=IdentityKind(row[1]),
            display_name=row[2],
            masked_identifier=row[3],
            status=IdentityStatus(row[4]),
            assurance_level=int(row[5] or 0),
        )
    except ValueError:
        return None


class IdentityLookup:
    """Point reads of identity summaries (fresh: an identity's status is what a suspension
    changes)."""

    def __init__(self, reader: PointReader) -> None:
        self._reader = reader
        self._sql = reader.sql(_IDENTITY_SQL)

    def summary(self, identity_id: str) -> IdentitySummary | None:
        """The summary of the identity ``identity_id``; None when there is none."""
        return identity_summary_of(self._reader.fetchone(self._sql, (identity_id,)))


_REPRESENTATIVE = (
    select(LegalPersonRow.legal_representative_id, IdentityRow.status)
    .join(IdentityRow, IdentityRow.id == LegalPersonRow.id)
    .where(LegalPersonRow.id == bindparam("id"))
)


def legal_representative(db: Database, legal_person_id: str) -> tuple[str, bool]:
    """(the legal representative's citizen id, whether the legal person is active), read
    fresh in one small query; ``("", False)`` when there is no such legal person."""
    with db.read() as session:
        row = session.execute(_REPRESENTATIVE, {"id": legal_person_id}).first()
    return ("", False) if row is None else (row[0], row[1] == IdentityStatus.ACTIVE.value)


def staff_citizen(db: Database, identity_id: str) -> str | None:
    """The citizen a staff identity is registered as; None for anyone else."""
    with db.read() as session:
        return session.scalar(select(StaffRow.citizen_id).where(StaffRow.id == identity_id))
