"""Using a seal: use grants (who may use it, for which documents, when) and uses (the
authorisation on the sealing hot path, and the record of each use in the history and the audit
log). Using a seal needs an active seal and a current grant to the acting person (or the
owner's representative, an agent holding ``seal.use``, the citizen owning a personal seal).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import InvalidArgument, PermissionDenied
from govtrust.principal import Principal
from hsm.keystore import SignatureScheme, default_scheme, parse_algorithm
from idp.types import IdentityRef
from seal import transitions
from seal.errors import (
    IllegalTransition,
    SealNotFound,
    SealNotUsable,
    SealRuleViolation,
    SealUseDenied,
)
from seal.executor import Executor, reason_text, record
from seal.making import PDF_KEY_ALGORITHM
from seal.models import SealEventRow, SealGrantRow, SealRow
from seal.owners import Owners
from seal.paging import page
from seal.transitions import SCOPE_MANAGE, SCOPE_USE
from seal.types import EventView, GrantState, GrantView, SealKind, SealStatus, SealView
from seal.views import event_view, grant_state, grant_view, load

S = SealStatus


@dataclass(frozen=True)
class Use:
    """A use of a seal being recorded (SealPdf, SealOfd, SignData)."""

    action: str  # one of seal.types.USE_ACTIONS
    document_kind: str
    digest_algorithm: str
    digest: bytes
    reason: str = ""
    # the time the output claims, when its digest covers it (an OFD's Signature.xml): recorded
    # so that the output can be re-produced with the same digest (:meth:`SealUsage.recorded_use`)
    signing_time: datetime | None = None


@dataclass(frozen=True)
class RecordedUse:
    """A recorded use whose output is to be made again (its call's answer was lost): the use
    context now, the use's event, and the signing time its record names (or None)."""

    context: UseContext
    event: EventView
    signing_time: datetime | None

    def require_digest(self, algorithm: str, digest: bytes) -> None:
        """Refuse (SealRuleViolation) to make the output again for a document or data other
        than the one the use recorded (``digest`` under ``algorithm``)."""
        event = self.event
        if event.digest_algorithm != algorithm or event.digest != digest:
            raise SealRuleViolation.rule(
                f"seal/{self.context.seal.id}",
                f"use {event.sequence} recorded another document: its output is not made again "
                "for this one",
            )


@dataclass(frozen=True)
class UseContext:
    """What sealing needs once a use is authorised. ``key_id`` / ``scheme`` /
    ``certificate_der`` sign PAdES and CMS (an SM2 seal's P-256 key); ``ses_*`` sign GB/T 38540
    SES_Signatures (an SM2 seal's SM2 key; the same key for an ECDSA seal)."""

    seal: SealView
    key_id: str
    scheme: SignatureScheme
    certificate_der: bytes
    role: str
    ses_key_id: str = ""
    ses_scheme: SignatureScheme = SignatureScheme.ECDSA_SHA256
    ses_certificate_der: bytes = b""

    @property
    def ses_sm2(self) -> bool:
        """Whether SES_Signatures are SM2-with-SM3 (dataHash SM3, the SM2 TSA)."""
        return self.ses_scheme is SignatureScheme.SM2_SM3


def _context(
    view: SealView,
    key_id: str | None,
    algorithm: str,
    certificate: bytes | None,
    pdf_key_id: str | None,
    pdf_certificate: bytes | None,
    role: str,
) -> UseContext:
    """The use context of a seal row's keys (PAdES/CMS with the P-256 key when there is one)."""
    assert key_id is not None and certificate is not None
    scheme = default_scheme(parse_algorithm(algorithm))
    if pdf_key_id and pdf_certificate:
        return UseContext(
            view,
            pdf_key_id,
            default_scheme(PDF_KEY_ALGORITHM),
            pdf_certificate,
            role,
            key_id,
            scheme,
            certificate,
        )
    return UseContext(view, key_id, scheme, certificate, role, key_id, scheme, certificate)


class SealUsage:
    """Use grants and uses of seals over one database and owner registry."""

    def __init__(
        self,
        db: Database,
        owners: Owners,
        executor: Executor,
        clock: Callable[[], datetime],
        get: Callable[[str], SealView],
    ) -> None:
        self.db = db
        self.owners = owners
        self.executor = executor
        self.now = clock
        self._get = get
        self._views: dict[str, SealView] = {}

    def grant_use(
        self,
        principal: Principal,
        seal_id: str,
        grantee: IdentityRef,
        document_kinds: Sequence[str],
        valid_from: datetime | None,
        valid_until: datetime | None,
    ) -> GrantView:
        """GrantSealUse: the owner's representative (or an agent holding agent.manage) lets a
        citizen use the seal for a window, optionally for some document kinds only."""
        kinds = sorted({k.strip() for k in document_kinds if k.strip()})
        for kind in kinds:
            if len(kind) > 64 or "," in kind:
                raise InvalidArgument.field("document_kinds", f"bad document kind {kind!r}")
        now = self.now()
        start = as_utc(valid_from) if valid_from else now
        end = as_utc(valid_until) if valid_until else None
        if end is not None and end <= start:
            raise InvalidArgument.field("valid_until", "must be after valid_from")
        person = self.owners.citizen(grantee, "grantee")
        if not person.active:
            raise SealRuleViolation.rule(f"identity/{person.id}", "the grantee is not active")
        with self.db.read() as session:
            row = load(session, seal_id)
        role = self.executor.owner_role(principal, row, SCOPE_MANAGE)
        if role is None:
            raise PermissionDenied(
                f"{principal.actor} may not grant the use of seal {seal_id}: only the owner's "
                "legal representative or an agent holding agent.manage may"
            )
        with self.db.transaction() as session:
            row = load(session, seal_id, lock=True)
            if not transitions.accepts_grants(SealStatus(row.status)):
                raise IllegalTransition.of(seal_id, "grant the use of", row.status)
            grant = SealGrantRow(
                id=uuid.uuid4().hex,
                seal_id=seal_id,
                grantee_id=person.id,
                document_kinds=",".join(kinds),
                valid_from=start,
                valid_until=end,
                granted_by=principal.citizen_id or principal.actor,
                granted_at=now,
                revoked_by="",
                revoke_reason="",
            )
            session.add(grant)
            record(
                session,
                row,
                principal,
                action="grant_use",
                role=role,
                reason="",
                related_id=grant.id,
                moment=now,
                details={"grantee": person.id, "document_kinds": kinds},
            )
            return grant_view(grant, now)

    def revoke_use(self, principal: Principal, grant_id: str, reason: str) -> GrantView:
        """RevokeSealUse: the owner's representative / agent.manage, or the grantee renouncing.

        No role may revoke every grant, so a grant that does not exist is refused exactly like
        one the caller may not revoke: the answer never tells whether a grant id exists."""
        reason = reason_text(reason, required=True)
        denied = PermissionDenied(
            f"{principal.actor} may not revoke seal grant {grant_id!r}: only its grantee, the "
            "owner's legal representative or an agent holding agent.manage may"
        )
        with self.db.transaction() as session:
            grant = session.get(SealGrantRow, grant_id, with_for_update=True)
            if grant is None:
                raise denied
            row = load(session, grant.seal_id, lock=True)
            if principal.citizen_id is not None and principal.citizen_id == grant.grantee_id:
                role = "grantee"
            else:
                owner_role = self.executor.owner_role(principal, row, SCOPE_MANAGE)
                if owner_role is None:
                    raise denied
                role = owner_role
            if grant.revoked_at is not None:
                raise SealRuleViolation.rule(f"grant/{grant_id}", "the grant is already revoked")
            now = self.now()
            grant.revoked_at = now
            grant.revoked_by = principal.citizen_id or principal.actor
            grant.revoke_reason = reason
            record(
                session,
                row,
                principal,
                action="revoke_use",
                role=role,
                reason=reason,
                related_id=grant.id,
                moment=now,
            )
            return grant_view(grant, now)

    def grant_recorded(self, seal_id: str, audit_seq: int) -> GrantView:
        """The use grant that seal ``seal_id``'s grant or revocation event recorded with audit
        record ``audit_seq`` names, as it stands now (anyone authenticated, as
        :meth:`list_grants`); :class:`SealNotFound` when no such event (:func:`_recorded_event`)."""
        with self.db.read() as session:
            event = _recorded_event(session, seal_id, audit_seq, ("grant_use", "revoke_use"))
            grant_id = event.related_id if event is not None else None
            grant = session.get(SealGrantRow, grant_id) if grant_id else None
            if grant is None:
                raise SealNotFound(
                    f"seal {seal_id} recorded no grant with audit record {audit_seq}"
                )
            return grant_view(grant, self.now())

    def list_grants(
        self,
        principal: Principal,
        *,
        seal_id: str = "",
        grantee: IdentityRef | None = None,
        include_inactive: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[GrantView], str]:
        """ListSealGrants by seal and/or grantee, newest first."""
        grantee_id = ""
        if grantee is not None and not grantee.is_empty:
            grantee_id = self.owners.citizen(grantee, "grantee").id
        if not seal_id and not grantee_id:
            raise InvalidArgument.field("seal_id", "seal_id or grantee is required")
        stmt = select(SealGrantRow)
        if seal_id:
            stmt = stmt.where(SealGrantRow.seal_id == seal_id)
        if grantee_id:
            stmt = stmt.where(SealGrantRow.grantee_id == grantee_id)
        stmt = stmt.order_by(SealGrantRow.granted_at.desc(), SealGrantRow.id.desc())
        now = self.now()
        with self.db.read() as session:
            rows = list(session.scalars(stmt))
        views = [grant_view(r, now) for r in rows]
        if not include_inactive:
            views = [g for g in views if g.state is GrantState.ACTIVE]
        return page(views, page_size, page_token)

    def _use_view(self, seal_id: str) -> SealView:
        """The seal's view for sealing (its picture and certificate never change once made),
        cached per process; status is always read fresh by the callers."""
        cached = self._views.get(seal_id)
        if cached is None:
            cached = self._get(seal_id)
            if len(self._views) > 1024:
                self._views.clear()
            self._views[seal_id] = cached
        return cached

    def authorise_use(self, principal: Principal, seal_id: str, document_kind: str) -> UseContext:
        """Check that ``principal`` may use the seal now: the seal is active (and not expired),
        its owner active, and the caller holds a current grant (for ``document_kind``) or is
        the owner's representative, an agent holding seal.use, or the citizen owning a
        personal seal. Two small queries on the hot path."""
        if not seal_id:
            raise InvalidArgument.field("seal_id", "required")
        citizen = principal.citizen_id
        now = self.now()
        with self.db.read() as session:
            row = session.connection().execute(_USE_SEAL, {"seal_id": seal_id}).first()
            if row is None:
                raise SealNotFound(f"no seal {seal_id!r}")
            (
                status,
                owner_id,
                owner_kind,
                valid_until,
                key_id,
                algorithm,
                certificate,
                pdf_key_id,
                pdf_certificate,
            ) = row
            if not transitions.usable(SealStatus(status)):
                raise SealNotUsable.because(seal_id, f"the seal is {status}, not active")
            role = ""
            if citizen is not None:
                for grant in session.scalars(_USE_GRANTS, {"seal_id": seal_id, "grantee": citizen}):
                    kinds = [k for k in grant.document_kinds.split(",") if k]
                    if grant_state(grant, now) is GrantState.ACTIVE and (
                        not kinds or document_kind in kinds
                    ):
                        role = "grantee"
                        break
        if valid_until is not None and as_utc(valid_until) <= now:
            raise SealNotUsable.because(seal_id, "the seal has expired")
        if owner_kind == "citizen":
            if not role and citizen == owner_id:
                role = "owner"
        else:
            representative, active = self.owners.representative(owner_id)
            if not active:
                raise SealNotUsable.because(seal_id, "the seal's owner is not active")
            if not role and citizen is not None:
                if citizen == representative:
                    role = "representative"
                elif self.owners.holds_scope(owner_id, citizen, SCOPE_USE):
                    role = "agent"
        if not role:
            raise SealUseDenied(
                f"{principal.actor} holds no current grant to use seal {seal_id}"
                + (f" for {document_kind!r} documents" if document_kind else "")
            )
        return _context(
            self._use_view(seal_id),
            key_id,
            algorithm,
            certificate,
            pdf_key_id,
            pdf_certificate,
            role,
        )

    def department_use(self, owner_uscc: str, document_kind: str) -> UseContext:
        """The active official seal (法定名称章) of the legal person ``owner_uscc`` as a use
        context, for a domain service that has itself authorised the caller for that
        department (licence issuance checks ``licence-issuer:<uscc>``). It checks no grant:
        never expose it to end users. Raises SealNotFound when the department has no official
        seal, SealNotUsable when it is not active, expired or its owner is not active."""
        if not owner_uscc:
            raise InvalidArgument.field("issuer_code", "required")
        with self.db.read() as session:
            row = session.connection().execute(_DEPARTMENT_SEAL, {"uscc": owner_uscc}).first()
        if row is None:
            raise SealNotFound(f"department {owner_uscc} has no official seal")
        (
            seal_id,
            status,
            owner_id,
            valid_until,
            key_id,
            algorithm,
            certificate,
            pdf_key_id,
            pdf_certificate,
        ) = row
        if not transitions.usable(SealStatus(status)):
            raise SealNotUsable.because(seal_id, f"the seal is {status}, not active")
        if valid_until is not None and as_utc(valid_until) <= self.now():
            raise SealNotUsable.because(seal_id, "the seal has expired")
        _, active = self.owners.representative(owner_id)
        if not active:
            raise SealNotUsable.because(seal_id, "the seal's owner is not active")
        return _context(
            self._use_view(seal_id),
            key_id,
            algorithm,
            certificate,
            pdf_key_id,
            pdf_certificate,
            "department",
        )

    def record_use(
        self,
        principal: Principal,
        context: UseContext,
        use: Use,
        *,
        session: Session | None = None,
    ) -> EventView:
        """Record a use (who, when, the document digest) in the history and the audit log; fails
        if the seal stopped being active meanwhile (the sealed output is then withheld). One
        write transaction: a conditional increment of the history length, the audit record and
        the event — or, given ``session``, inside the caller's write transaction (licence
        issuance stores the licence and the seal's use together)."""
        if session is not None:
            return self._record_use_in(session, principal, context, use)
        with self.db.transaction() as own:
            return self._record_use_in(own, principal, context, use)

    def _record_use_in(
        self, session: Session, principal: Principal, context: UseContext, use: Use
    ) -> EventView:
        seal_id = context.seal.id
        moment = self.now()
        connection = session.connection()  # Core, not ORM-enabled DML: no session sync
        sequence = connection.execute(_USE_COUNT_BY, {"seal_id": seal_id, "count": 1}).scalar()
        if sequence is None:
            raise SealNotUsable.because(seal_id, "the seal is no longer active")
        record = audit.append(
            session,
            actor=principal.actor,
            action=f"seal.{use.action}",
            target=f"seal/{seal_id}",
            details=_use_details(principal, context, use),
        )
        values = _use_event(seal_id, sequence, principal, context, use, moment, record.seq)
        connection.execute(_USE_EVENT, values)
        return EventView(
            sequence=sequence,
            action=use.action,
            from_status="",
            to_status="",
            actor_id=principal.citizen_id or "",
            principal=principal.actor,
            role=context.role,
            reason=use.reason,
            occurred_at=moment,
            digest_algorithm=use.digest_algorithm,
            digest=use.digest,
            document_kind=use.document_kind,
            audit_seq=record.seq,
        )

    def recorded_use(
        self, principal: Principal, seal_id: str, audit_seq: int, action: str
    ) -> RecordedUse:
        """The use ``action`` of seal ``seal_id`` that ``principal`` recorded with the audit
        record ``audit_seq`` — a call whose effect committed but whose answer was lost — for
        making its output again, bound to that use (no second use is recorded). Making it again
        signs with the seal's key, so the caller must still be allowed to use the seal now
        (:meth:`authorise_use`: it is active, the grant current). Raises SealNotFound when no
        such use of ``principal`` was recorded."""
        with self.db.read() as session:
            row = _recorded_event(session, seal_id, audit_seq, (action,))
            record = audit.record_at(session, audit_seq)
        if (
            row is None
            or record is None
            or row.principal != principal.actor
            or record.action != f"seal.{action}"
        ):
            raise SealNotFound(
                f"no {action} use of seal {seal_id} by {principal.actor} at {audit_seq}"
            )
        context = self.authorise_use(principal, seal_id, row.document_kind)
        claimed = record.details.get(SIGNING_TIME)
        signing_time = datetime.fromisoformat(claimed) if isinstance(claimed, str) else None
        return RecordedUse(context, event_view(row), signing_time)

    def record_reproduction(self, principal: Principal, recorded: RecordedUse) -> None:
        """Audit that the output of ``recorded`` was made again (the seal's key signed once
        more): one record ``seal.reproduce`` naming the use; the history and its count are
        unchanged (it is the same use)."""
        event = recorded.event
        with self.db.transaction() as session:
            audit.append(
                session,
                actor=principal.actor,
                action=REPRODUCE_ACTION,
                target=f"seal/{recorded.context.seal.id}",
                details={
                    "use_action": event.action,
                    "use_sequence": event.sequence,
                    "use_audit_seq": event.audit_seq,
                    "digest_algorithm": event.digest_algorithm,
                    "digest": event.digest.hex(),
                    "role": recorded.context.role,
                    "acting_citizen": principal.citizen_id or "",
                },
            )

    def record_uses(
        self, principal: Principal, context: UseContext, uses: Sequence[Use], session: Session
    ) -> list[int]:
        """Record several uses of one seal inside the caller's write transaction (a bulk licence
        import's chunk): one conditional increment of the history length by their number, their
        audit records appended together, one multi-row insert of the events; their sequence
        numbers. Fails, like :meth:`record_use`, when the seal stopped being active."""
        if not uses:
            return []
        seal_id = context.seal.id
        moment = self.now()
        connection = session.connection()
        last = connection.execute(_USE_COUNT_BY, {"seal_id": seal_id, "count": len(uses)}).scalar()
        if last is None:
            raise SealNotUsable.because(seal_id, "the seal is no longer active")
        first = int(last) - len(uses) + 1
        seqs = audit.append_many(
            session,
            [
                audit.Entry(
                    principal.actor,
                    f"seal.{use.action}",
                    f"seal/{seal_id}",
                    audit.canonical_json(_use_details(principal, context, use)).decode(),
                )
                for use in uses
            ],
        )
        connection.execute(
            _USE_EVENT,
            [
                _use_event(seal_id, first + i, principal, context, use, moment, seq)
                for i, (use, seq) in enumerate(zip(uses, seqs, strict=True))
            ],
        )
        return [first + i for i in range(len(uses))]


def _recorded_event(
    session: Session, seal_id: str, audit_seq: int, actions: Sequence[str]
) -> SealEventRow | None:
    """The newest event of seal ``seal_id`` with one of ``actions`` written with audit record
    ``audit_seq`` (how a lost answer finds what its call did). Newest first, so that a backward
    scan of the seal's history stops at the recent event; ``audit_seq`` is not indexed (a rare
    read: retries of lost answers)."""
    return session.scalars(
        select(SealEventRow)
        .where(SealEventRow.seal_id == seal_id)
        .where(SealEventRow.audit_seq == audit_seq)
        .where(SealEventRow.action.in_(actions))
        .order_by(SealEventRow.sequence.desc())
        .limit(1)
    ).first()


def _use_details(principal: Principal, context: UseContext, use: Use) -> dict[str, object]:
    """The audit details of one use (one shape for single and bulk uses)."""
    details: dict[str, object] = {
        "role": context.role,
        "reason": use.reason,
        "acting_citizen": principal.citizen_id or "",
        "digest_algorithm": use.digest_algorithm,
        "digest": use.digest.hex(),
        "document_kind": use.document_kind,
    }
    if use.signing_time is not None:
        details[SIGNING_TIME] = as_utc(use.signing_time).isoformat()
    return details


SIGNING_TIME = "signing_time"
"""The use record's detail naming the time its output claims (:attr:`Use.signing_time`)."""
REPRODUCE_ACTION = "seal.reproduce"
"""The audit action of a use's output made again (not a use: no event, no count)."""


def _use_event(
    seal_id: str,
    sequence: int,
    principal: Principal,
    context: UseContext,
    use: Use,
    moment: datetime,
    audit_seq: int,
) -> dict[str, object]:
    """The ``seal_events`` row of one use."""
    return {
        "seal_id": seal_id,
        "sequence": sequence,
        "action": use.action,
        "from_status": "",
        "to_status": "",
        "actor_id": principal.citizen_id or "",
        "principal": principal.actor,
        "role": context.role,
        "reason": use.reason,
        "occurred_at": moment,
        "digest_algorithm": use.digest_algorithm,
        "digest": use.digest,
        "document_kind": use.document_kind,
        "related_id": "",
        "audit_seq": audit_seq,
    }


# Statements of the use hot path, built once (SQLAlchemy caches their compiled form).
_USE_SEAL = select(
    SealRow.status,
    SealRow.owner_id,
    SealRow.owner_kind,
    SealRow.valid_until,
    SealRow.key_id,
    SealRow.key_algorithm,
    SealRow.certificate_der,
    SealRow.pdf_key_id,
    SealRow.pdf_certificate_der,
).where(SealRow.id == bindparam("seal_id"))
_DEPARTMENT_SEAL = (
    select(
        SealRow.id,
        SealRow.status,
        SealRow.owner_id,
        SealRow.valid_until,
        SealRow.key_id,
        SealRow.key_algorithm,
        SealRow.certificate_der,
        SealRow.pdf_key_id,
        SealRow.pdf_certificate_der,
    )
    .where(
        SealRow.owner_uscc == bindparam("uscc"),
        SealRow.owner_kind == "legal_person",
        SealRow.kind == SealKind.OFFICIAL.value,
        SealRow.status.in_([S.ACTIVE.value, S.SUSPENDED.value]),
    )
    .order_by(SealRow.status)  # "active" before "suspended"
    .limit(1)
)
_USE_GRANTS = select(SealGrantRow).where(
    SealGrantRow.seal_id == bindparam("seal_id"), SealGrantRow.grantee_id == bindparam("grantee")
)
_SEALS: Table = SealRow.__table__  # type: ignore[assignment]
_EVENTS: Table = SealEventRow.__table__  # type: ignore[assignment]
_USE_EVENT = insert(_EVENTS)
_USE_COUNT_BY = (
    update(_SEALS)
    .where(_SEALS.c.id == bindparam("seal_id"), _SEALS.c.status == S.ACTIVE.value)
    .values(history_length=_SEALS.c.history_length + bindparam("count"))
    .returning(_SEALS.c.history_length)
)
