"""Read models of the seal area: the domain views of seal, grant and event rows, and the
listings (seals by owner / kind / state, a seal's history)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from govtrust.db import Database, as_utc
from govtrust.errors import InvalidArgument
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
    name, owner's name or USCC, or its id)."""
    stmt = select(SealRow)
    text = search.strip()
    if text:
        like = "%" + text.replace("\\", "").replace("%", "").replace("_", "") + "%"
        stmt = stmt.where(
            or_(
                SealRow.id == text,
                SealRow.name.like(like),
                SealRow.owner_name.like(like),
                SealRow.owner_uscc == text,
            )
        )
    if owner is not None and not owner.is_empty:
        stmt = stmt.where(SealRow.owner_id == owners.party(owner, "owner").id)
    if kind is not None:
        stmt = stmt.where(SealRow.kind == kind.value)
    if statuses:
        stmt = stmt.where(SealRow.status.in_([s.value for s in statuses]))
    size, after, offset = keyset(page_size, page_token)
    if after is not None:  # keyset paging: the next page costs what the first does
        moment, row_id = after
        stmt = stmt.where(
            or_(
                SealRow.applied_at < moment,
                and_(SealRow.applied_at == moment, SealRow.id < row_id),
            )
        )
    stmt = stmt.order_by(SealRow.applied_at.desc(), SealRow.id.desc())
    with db.read() as session:
        rows = list(session.scalars(stmt.offset(offset).limit(size + 1)))
    last = rows[size - 1] if len(rows) > size else None
    token = keyset_token(as_utc(last.applied_at), last.id) if last is not None else ""
    return [view(r) for r in rows[:size]], token


def history(
    db: Database,
    seal_id: str,
    *,
    include_uses: bool = False,
    page_size: int = 0,
    page_token: str = "",
) -> tuple[list[EventView], str]:
    """GetSealHistory: the seal's events, oldest first (uses only when asked)."""
    with db.read() as session:
        load(session, seal_id)
        return _events(session, seal_id, include_uses, page_size, page_token)


def with_history(
    db: Database, seal_id: str, *, include_uses: bool = False, page_size: int = 0
) -> tuple[SealView, list[EventView], str]:
    """One seal and the first page of its history (as :func:`history`), in one read."""
    with db.read() as session:
        seal = view(load(session, seal_id))
        events, token = _events(session, seal_id, include_uses, page_size, "")
    return seal, events, token


def _events(
    session: Session, seal_id: str, include_uses: bool, page_size: int, page_token: str
) -> tuple[list[EventView], str]:
    size, offset = paging(page_size, page_token)
    stmt = select(SealEventRow).where(SealEventRow.seal_id == seal_id)
    if not include_uses:
        stmt = stmt.where(SealEventRow.action.not_in(USE_ACTIONS))
    rows = list(
        session.scalars(stmt.order_by(SealEventRow.sequence).offset(offset).limit(size + 1))
    )
    token = token_for(offset + size) if len(rows) > size else ""
    return [event_view(r) for r in rows[:size]], token
