"""Read models of the seal area: the domain views of seal, grant and event rows, and the
listings (seals by owner / kind / state, a seal's history)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from string import ascii_lowercase
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from govtrust.db import Database, as_utc
from govtrust.errors import InvalidArgument
from govtrust.fastsql import FastSql, stored_datetime
from idp.types import IdentityRef
from seal.errors import SealNotFound
from seal.models import SealEventRow, SealGrantRow, SealRow
from seal.owners import Owners
from seal.paging import keyset, keyset_token, paging, token_for
from seal.types import (
    USE_ACTIONS,
    EventView,
    GrantState,
    GrantView,
    SealKind,
    SealShape,
    SealStatus,
    SealView,
)


def opt(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC, or None."""
    return as_utc(moment) if moment is not None else None


# A seal row as a driver-level query reads it (list_seals, with_history): the view's fields,
# which are the table's column names, in the view's order.
SEAL_COLUMNS = tuple(f.name for f in fields(SealView))
_SEAL_DATETIMES = tuple(
    i for i, name in enumerate(SEAL_COLUMNS) if name.endswith(("_at", "valid_from", "valid_until"))
)
_SEAL_KIND, _SEAL_STATUS, _SEAL_SHAPE, _SEAL_CERTIFICATE_ID = (
    SEAL_COLUMNS.index(name) for name in ("kind", "status", "shape", "certificate_id")
)
# A history event the same way (its details are not a column).
EVENT_COLUMNS = tuple(f.name for f in fields(EventView) if f.name != "details")
_EVENT_OCCURRED, _EVENT_DIGEST = EVENT_COLUMNS.index("occurred_at"), EVENT_COLUMNS.index("digest")


def seal_view_of(values: Sequence[Any]) -> SealView:
    """The view of a driver-level row of :data:`SEAL_COLUMNS`: what :func:`view` gives for the
    ORM row (datetimes aware UTC, enums, no NULL certificate id)."""
    row = list(values)
    for i in _SEAL_DATETIMES:
        if row[i] is not None:
            row[i] = stored_datetime(row[i])
    row[_SEAL_KIND] = SealKind(row[_SEAL_KIND])
    row[_SEAL_STATUS] = SealStatus(row[_SEAL_STATUS])
    row[_SEAL_SHAPE] = SealShape(row[_SEAL_SHAPE])
    row[_SEAL_CERTIFICATE_ID] = row[_SEAL_CERTIFICATE_ID] or ""
    return SealView(*row)


def event_view_of(values: Sequence[Any]) -> EventView:
    """The view of a driver-level row of :data:`EVENT_COLUMNS`: what :func:`event_view` gives."""
    row = list(values)
    row[_EVENT_OCCURRED] = stored_datetime(row[_EVENT_OCCURRED])
    row[_EVENT_DIGEST] = row[_EVENT_DIGEST] or b""
    return EventView(*row)


def view(row: SealRow) -> SealView:
    """The domain view of a seal row."""
    return SealView(
        id=row.id,
        owner_id=row.owner_id,
        owner_name=row.owner_name,
        owner_uscc=row.owner_uscc,
        kind=SealKind(row.kind),
        name=row.name,
        business_number=row.business_number,
        taxpayer_number=row.taxpayer_number,
        named_person_id=row.named_person_id,
        named_person_name=row.named_person_name,
        status=SealStatus(row.status),
        status_reason=row.status_reason,
        shape=SealShape(row.shape),
        width_mm=row.width_mm,
        height_mm=row.height_mm,
        key_algorithm=row.key_algorithm,
        certificate_der=row.certificate_der,
        certificate_id=row.certificate_id or "",
        seal_structure=row.seal_structure,
        filing_number=row.filing_number,
        valid_from=opt(row.valid_from),
        valid_until=opt(row.valid_until),
        applicant_id=row.applicant_id,
        applied_at=as_utc(row.applied_at),
        reviewed_at=opt(row.reviewed_at),
        made_at=opt(row.made_at),
        filed_at=opt(row.filed_at),
        issued_at=opt(row.issued_at),
        revoked_at=opt(row.revoked_at),
        destroyed_at=opt(row.destroyed_at),
        replaces_seal_id=row.replaces_seal_id,
        replaced_by_seal_id=row.replaced_by_seal_id,
        updated_at=as_utc(row.updated_at),
        pdf_certificate_der=row.pdf_certificate_der,
    )


def grant_state(row: SealGrantRow, now: datetime) -> GrantState:
    """A grant's state at ``now``."""
    if row.revoked_at is not None:
        return GrantState.REVOKED
    if now < as_utc(row.valid_from):
        return GrantState.NOT_YET_VALID
    if row.valid_until is not None and now >= as_utc(row.valid_until):
        return GrantState.EXPIRED
    return GrantState.ACTIVE


def grant_view(row: SealGrantRow, now: datetime) -> GrantView:
    """The domain view of a grant row."""
    return GrantView(
        id=row.id,
        seal_id=row.seal_id,
        grantee_id=row.grantee_id,
        document_kinds=tuple(k for k in row.document_kinds.split(",") if k),
        valid_from=as_utc(row.valid_from),
        valid_until=opt(row.valid_until),
        state=grant_state(row, now),
        granted_by=row.granted_by,
        granted_at=as_utc(row.granted_at),
        revoked_by=row.revoked_by,
        revoked_at=opt(row.revoked_at),
        revoke_reason=row.revoke_reason,
    )


def event_view(row: SealEventRow) -> EventView:
    """The domain view of a history event."""
    return EventView(
        sequence=row.sequence,
        action=row.action,
        from_status=row.from_status,
        to_status=row.to_status,
        actor_id=row.actor_id,
        principal=row.principal,
        role=row.role,
        reason=row.reason,
        occurred_at=as_utc(row.occurred_at),
        digest_algorithm=row.digest_algorithm,
        digest=row.digest or b"",
        document_kind=row.document_kind,
        related_id=row.related_id,
        audit_seq=row.audit_seq,
    )


def load(session: Session, seal_id: str, *, lock: bool = False) -> SealRow:
    """The seal row (locked for update when asked); SealNotFound when there is none."""
    if not seal_id:
        raise InvalidArgument.field("seal_id", "required")
    stmt = select(SealRow).where(SealRow.id == seal_id)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise SealNotFound(f"no seal {seal_id!r}")
    return row


def list_seals(
    db: Database,
    owners: Owners,
    *,
    owner: IdentityRef | None = None,
    kind: SealKind | None = None,
    statuses: Sequence[SealStatus] = (),
    page_size: int = 0,
    page_token: str = "",
    search: str = "",
) -> tuple[list[SealView], str]:
    """ListSeals by owner, kind and states, newest first (``search``: a part of the seal's
    name, owner's name or USCC, or its id).

    A driver-level query (:class:`govtrust.fastsql.FastSql`; the ORM's row and datetime
    handling cost several times the query for a page of seals) on the
    ``(status | owner_id, applied_at, id)`` indexes."""
    fast = FastSql(db.engine)
    where: list[str] = []
    params: dict[str, Any] = {}
    text = search.strip()
    if text:
        params["text"] = text
        params["like"] = "%" + text.replace("\\", "").replace("%", "").replace("_", "") + "%"
        where.append(
            "(id = :text OR name LIKE :like OR owner_name LIKE :like OR owner_uscc = :text)"
        )
    if owner is not None and not owner.is_empty:
        params["owner_id"] = owners.party(owner, "owner").id
        where.append("owner_id = :owner_id")
    if kind is not None:
        params["kind"] = kind.value
        where.append("kind = :kind")
    if statuses:
        wanted = sorted({s.value for s in statuses})  # at most the states there are
        # FastSql's parameter names are letters and "_": status_a, status_b, ...
        names = [f"status_{ascii_lowercase[i]}" for i in range(len(wanted))]
        params.update(zip(names, wanted, strict=True))
        where.append(f"status IN ({', '.join(':' + n for n in names)})")
    size, after, offset = keyset(page_size, page_token)
    if after is not None:  # keyset paging: the next page costs what the first does
        moment, row_id = after
        params["moment"], params["row_id"] = fast.ts(as_utc(moment)), row_id
        where.append("(applied_at < :moment OR (applied_at = :moment AND id < :row_id))")
    params["limit"], params["offset"] = size + 1, offset
    sql = (
        f"SELECT {', '.join(SEAL_COLUMNS)} FROM seal_seals"  # noqa: S608 - fixed fragments, no values
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY applied_at DESC, id DESC LIMIT :limit OFFSET :offset"
    )
    with fast.read() as cursor:
        cursor.execute(fast.sql(sql), params)
        seals = [seal_view_of(r) for r in cursor.fetchall()]
    last = seals[size - 1] if len(seals) > size else None
    token = keyset_token(last.applied_at, last.id) if last is not None else ""
    return seals[:size], token


def history(
    db: Database,
    seal_id: str,
    *,
    include_uses: bool = False,
    page_size: int = 0,
    page_token: str = "",
) -> tuple[list[EventView], str]:
    """GetSealHistory: the seal's events, oldest first (uses only when asked)."""
    size, offset = paging(page_size, page_token)
    stmt = select(SealEventRow).where(SealEventRow.seal_id == seal_id)
    if not include_uses:
        stmt = stmt.where(SealEventRow.action.not_in(USE_ACTIONS))
    with db.read() as session:
        load(session, seal_id)
        rows = list(
            session.scalars(stmt.order_by(SealEventRow.sequence).offset(offset).limit(size + 1))
        )
    token = token_for(offset + size) if len(rows) > size else ""
    return [event_view(r) for r in rows[:size]], token


_SEAL_BY_ID = f"SELECT {', '.join(SEAL_COLUMNS)} FROM seal_seals WHERE id = :id"  # noqa: S608 - fixed fragments, no values
_EVENTS_OF = (
    f"SELECT {', '.join(EVENT_COLUMNS)} FROM seal_events WHERE seal_id = :id"  # noqa: S608 - fixed fragments, no values
    " ORDER BY sequence LIMIT :limit"
)


def with_history(
    db: Database, seal_id: str, *, page_size: int = 0
) -> tuple[SealView, list[EventView], bool]:
    """One seal and the first ``page_size`` events of its history, uses included, oldest
    first, and whether there are more: two driver-level statements in one read transaction
    (a seal's page; the ORM's rows cost several times the queries)."""
    if not seal_id:
        raise InvalidArgument.field("seal_id", "required")
    size, _ = paging(page_size, "")
    fast = FastSql(db.engine)
    with fast.read() as cursor:
        if fast.sqlite:
            cursor.execute("BEGIN")  # one snapshot for both statements (read() rolls back)
        cursor.execute(fast.sql(_SEAL_BY_ID), {"id": seal_id})
        row = cursor.fetchone()
        if row is None:
            raise SealNotFound(f"no seal {seal_id!r}")
        cursor.execute(fast.sql(_EVENTS_OF), {"id": seal_id, "limit": size + 1})
        events = cursor.fetchall()
    history = [event_view_of(e) for e in events[:size]]
    return seal_view_of(row), history, len(events) > size
