"""Searching the registry: identity summaries by name prefix, kind, status and department."""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from govtrust.db import Database
from govtrust.principal import Principal
from idp.models import IdentityRow, StaffRow
from idp.names import name_key
from idp.paging import checked_page_size, page_position, page_token_for
from idp.registry_state import REGISTRAR, VERIFIER, summary_of
from idp.types import IdentityKind, IdentityStatus, IdentitySummary, Page


def search_identities(
    db: Database,
    principal: Principal,
    *,
    name_prefix: str = "",
    kind: IdentityKind | None = None,
    status: IdentityStatus | None = None,
    department_code: str = "",
    page_size: int = 0,
    page_token: str = "",
) -> Page[IdentitySummary]:
    """Identities by name prefix, kind, status and department, ordered by name then id (keyset
    paged); verifiers and registrars."""
    principal.require_role(VERIFIER, REGISTRAR)
    size = checked_page_size(page_size)
    prefix = name_key(name_prefix)
    department_code = department_code.strip()
    filters = ("search", prefix, kind, status, department_code)
    position = page_position(page_token, filters, 2)
    stmt = select(IdentityRow)
    if department_code:
        stmt = stmt.join(StaffRow, StaffRow.id == IdentityRow.id).where(
            StaffRow.department_code == department_code
        )
    if kind is not None:
        stmt = stmt.where(IdentityRow.kind == kind.value)
    if status is not None:
        stmt = stmt.where(IdentityRow.status == status.value)
    if prefix:
        stmt = stmt.where(IdentityRow.name_key.startswith(prefix, autoescape=True))
    if position is not None:
        stmt = stmt.where(
            or_(
                IdentityRow.name_key > position[0],
                and_(IdentityRow.name_key == position[0], IdentityRow.id > position[1]),
            )
        )
    stmt = stmt.order_by(IdentityRow.name_key, IdentityRow.id).limit(size + 1)
    with db.read() as session:
        rows = list(session.scalars(stmt))
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        token = page_token_for(filters, rows[-1].name_key, rows[-1].id)
    return Page(tuple(summary_of(r) for r in rows), token)
