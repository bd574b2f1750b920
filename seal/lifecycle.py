"""The seal service: one facade over the seal lifecycle, its making and its use.

    applied ─approve─▶ approved ─make─▶ made ─file─▶ filed ─issue─▶ active ⇄ suspended
       └─reject─▶ rejected
    active|suspended ─revoke─▶ revoked ─destroy─▶ destroyed
    active|suspended ─remake─▶ revoked (+ a new seal, made, that replaces it)

One concept per module: :mod:`seal.transitions` is the transition table and its pure decisions
(states, roles, separation of duties), :mod:`seal.executor` applies a decided transition to
storage with its compensation, :mod:`seal.making` makes and re-makes seals, :mod:`seal.usage`
holds use grants and uses, :mod:`seal.views` the read models, :mod:`seal.paging` the page
tokens. :class:`SealService` keeps the application (ApplySeal), the listings and the cancelled
owner's listener, and delegates the rest. Every transition records who (principal, acting
citizen, role), when and why as a seal event and an audit record in the same transaction, and
updates the seal certificate in the CA (hold on suspend, release on resume, revoke on
revoke/remake).

Rules: one official seal per owner at a time (also a unique column in the database); one live
business seal per number; the owner must be active to apply or use; a cancelled legal person's
seals are revoked with it (:meth:`SealService.on_identity_status`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from govtrust.db import Database, as_utc
from govtrust.errors import FieldViolation, InvalidArgument, PermissionDenied
from govtrust.lease import Fence
from govtrust.principal import SYSTEM, Principal
from hsm.keystore import KeyAlgorithm, KeyStore, parse_algorithm
from idp.types import IdentityRef, IdentityStatus, IdentitySummary
from seal import images, structures, transitions, views
from seal.authority import SealAuthority
from seal.errors import SealRuleViolation
from seal.executor import (
    REVOCATION_CESSATION,
    REVOCATION_KEY_COMPROMISE,
    REVOCATION_SUPERSEDED,
    Executor,
    record,
)
from seal.executor import reason_text as _reason
from seal.making import (
    DEFAULT_VALIDITY,
    MAX_VALIDITY,
    Making,
    SealMaking,
    certificate_ids,
    key_ids,
    new_seal_id,
)
from seal.models import REASON_LENGTH, SealRow
from seal.owners import Owners, Party
from seal.paging import DEFAULT_PAGE, MAX_PAGE
from seal.transitions import (
    APPLY,
    FILING,
    LIVE_SLOT_RELEASE,
    MAKER,
    OWNER,
    REVIEWER,
    SCOPE_APPLY,
    SCOPE_MANAGE,
    SCOPE_USE,
    TRANSITIONS,
    Transition,
    iter_statuses,
)
from seal.types import EventView, GrantView, SealKind, SealStatus, SealView
from seal.usage import RecordedUse, SealUsage, Use, UseContext
from seal.views import event_view, grant_state, grant_view, load, view

__all__ = [
    "APPLY",
    "DEFAULT_PAGE",
    "DEFAULT_VALIDITY",
    "FILING",
    "MAKER",
    "MAX_PAGE",
    "MAX_VALIDITY",
    "OWNER",
    "REVIEWER",
    "REVOCATION_CESSATION",
    "REVOCATION_KEY_COMPROMISE",
    "REVOCATION_SUPERSEDED",
    "SCOPE_APPLY",
    "SCOPE_MANAGE",
    "SCOPE_USE",
    "TRANSITIONS",
    "Application",
    "Making",
    "RecordedUse",
    "SealService",
    "Transition",
    "Use",
    "UseContext",
    "event_view",
    "grant_state",
    "grant_view",
    "iter_statuses",
    "view",
]

log = logging.getLogger("govtrust.seal")

S = SealStatus
RECONCILE_WINDOW = timedelta(days=2)  # how far back seal.reconcile looks for revoked seals


@dataclass(frozen=True)
class Application:
    """ApplySeal's input."""

    owner: IdentityRef
    kind: SealKind
    name: str = ""
    business_number: str = ""
    taxpayer_number: str = ""
    named_person: IdentityRef | None = None
    valid_until: datetime | None = None
    reason: str = ""
    # "" for the service's default (``seal_default_key_algorithm``, SM2 unless configured);
    # an SM2 seal also gets a P-256 key for PAdES at making
    key_algorithm: str = ""


def _revoked_at(row: SealRow, moment: datetime) -> None:
    row.revoked_at = moment


class SealService:
    """Domain service of the seal system over one database, key store, CA and registry: a
    facade over :class:`seal.executor.Executor`, :class:`seal.making.SealMaking` and
    :class:`seal.usage.SealUsage`."""

    def __init__(
        self,
        db: Database,
        keystore: KeyStore,
        authority: SealAuthority,
        owners: Owners,
        *,
        default_key_algorithm: str = "ec-p256",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.keystore = keystore
        self.authority = authority
        self.owners = owners
        self.default_key_algorithm = default_key_algorithm
        self._clock = clock or (lambda: datetime.now(UTC))
        # the parts read the clock through ``now``, so that replacing ``_clock`` reaches them
        self.executor = Executor(db, owners, self.now)
        self.making = SealMaking(
            db, keystore, authority, self.executor, self.now, default_key_algorithm
        )
        self.usage = SealUsage(db, owners, self.executor, self.now, self.get)

    def now(self) -> datetime:
        """The service's clock (UTC)."""
        return self._clock()

    def get(self, seal_id: str) -> SealView:
        """One seal (anyone authenticated may read a seal's public record)."""
        with self.db.read() as session:
            return view(load(session, seal_id))

    # --- apply and review -------------------------------------------------------------------

    def apply(self, principal: Principal, application: Application) -> SealView:
        """ApplySeal: the owner's representative or an agent holding ``seal.apply`` (or the
        citizen owning a personal seal) applies for a seal (→ applied); no staff role may."""
        violations: list[FieldViolation] = []
        kind = application.kind
        if kind is SealKind.BUSINESS and not application.business_number.strip():
            violations.append(FieldViolation("business_number", "a business seal needs a number"))
        if len(application.business_number) > 16 or not all(
            c.isalnum() for c in application.business_number
        ):
            violations.append(FieldViolation("business_number", "1-16 letters or digits"))
        if len(application.name) > 40:
            violations.append(FieldViolation("name", "at most 40 characters"))
        if violations:
            raise InvalidArgument("invalid seal application", violations)
        reason = _reason(application.reason, required=False)
        algorithm = parse_algorithm(application.key_algorithm or self.default_key_algorithm)
        if algorithm is KeyAlgorithm.SM2:
            self.authority.require_sm2()  # FAILED_PRECONDITION, nothing stored
        owner = self.owners.party(application.owner, "owner")
        if not owner.active:
            raise SealRuleViolation.rule(f"identity/{owner.id}", "the owner is not active")
        if owner.kind == "citizen" and kind is not SealKind.PERSONAL_NAME:
            raise InvalidArgument.field("kind", "a citizen may only have a personal-name seal")
        role = self._applicant_role(principal, owner)
        named: Party | None = None
        if kind is SealKind.PERSONAL_NAME:
            if owner.kind == "citizen":
                named = owner
            elif application.named_person is None or application.named_person.is_empty:
                raise InvalidArgument.field("named_person", "a personal-name seal names a person")
            else:
                named = self.owners.citizen(application.named_person, "named_person")
        now = self.now()
        valid_until = application.valid_until
        if valid_until is not None:
            valid_until = as_utc(valid_until)
            if valid_until <= now or valid_until - now > MAX_VALIDITY:
                raise InvalidArgument.field("valid_until", "must be within the next five years")
        name = application.name.strip() or self._default_name(owner, kind, named)
        taxpayer = application.taxpayer_number.strip() or (
            owner.uscc if kind is SealKind.INVOICE else ""
        )
        design = images.SealDesign(kind, name, application.business_number, taxpayer)
        images.layout(design)  # every character must be drawable
        width, height = design.size_mm()
        seal_id = new_seal_id()
        row = SealRow(
            id=seal_id,
            owner_id=owner.id,
            owner_kind=owner.kind,
            owner_name=owner.name,
            owner_uscc=owner.uscc,
            kind=kind.value,
            name=name,
            business_number=application.business_number.strip(),
            taxpayer_number=taxpayer,
            named_person_id=named.id if named else "",
            named_person_name=named.name if named else "",
            status=APPLY.target.value,  # the table's: apply leaves from no state
            status_reason=reason,
            shape=design.resolved_shape().value,
            width_mm=width,
            height_mm=height,
            key_algorithm=algorithm.value,
            valid_until=valid_until,
            applicant_id=principal.citizen_id or "",
            applicant_actor=principal.actor,
            apply_reason=reason,
            applied_at=now,
            updated_at=now,
            history_length=0,
            official_owner=owner.id if kind is SealKind.OFFICIAL else None,
            business_slot=(
                f"{owner.id}:{application.business_number.strip()}"
                if kind is SealKind.BUSINESS
                else None
            ),
        )
        try:
            with self.db.transaction() as session:
                self._check_slots(session, row)
                session.add(row)
                session.flush()
                record(
                    session,
                    row,
                    principal,
                    action="apply",
                    role=role,
                    reason=reason,
                    to_status=APPLY.target.value,
                    moment=now,
                    details={"kind": kind.value, "name": name, "owner": owner.id},
                )
        except IntegrityError:
            raise self._slot_error(row) from None
        return view(row)

    def _applicant_role(self, principal: Principal, owner: Party) -> str:
        """``apply`` (:data:`APPLY`) is the owner's alone: no staff role may apply for a seal,
        so the reviewer can never approve an application it made up itself."""
        citizen = principal.citizen_id
        if citizen is not None:
            if owner.kind == "citizen" and owner.id == citizen:
                return "owner"
            if owner.representative_id == citizen:
                return "representative"
            if owner.kind != "citizen" and self.owners.holds_scope(
                owner.id, citizen, transitions.owner_scope("apply")
            ):
                return "agent"
        raise PermissionDenied(
            f"{principal.actor} may not apply for a seal of {owner.id}: only the legal "
            "representative or an agent holding seal.apply may"
        )

    @staticmethod
    def _default_name(owner: Party, kind: SealKind, named: Party | None) -> str:
        if kind is SealKind.PERSONAL_NAME:
            assert named is not None
            return named.name
        return owner.name

    def _check_slots(self, session: Session, row: SealRow) -> None:
        if row.official_owner is not None and session.scalar(
            select(SealRow.id).where(SealRow.official_owner == row.official_owner)
        ):
            raise self._slot_error(row)
        if row.business_slot is not None and session.scalar(
            select(SealRow.id).where(SealRow.business_slot == row.business_slot)
        ):
            raise self._slot_error(row)

    @staticmethod
    def _slot_error(row: SealRow) -> SealRuleViolation:
        if row.kind == SealKind.OFFICIAL.value:
            return SealRuleViolation.rule(
                f"identity/{row.owner_id}",
                "the owner already has an official seal (one at a time); revoke it or re-make it",
            )
        return SealRuleViolation.rule(
            f"identity/{row.owner_id}",
            f"the owner already has a live business seal number {row.business_number}",
        )

    def review(self, principal: Principal, seal_id: str, approve: bool, reason: str) -> SealView:
        """ReviewSeal: approve (→ approved) or reject with a reason (→ rejected)."""
        operation = "approve" if approve else "reject"
        reason = _reason(reason, required=not approve)
        return self.executor.simple(
            principal, seal_id, operation, reason, lambda row, now: setattr(row, "reviewed_at", now)
        )

    # --- make, file, issue ----------------------------------------------------------------------

    def maker(self, covering: datetime | None = None) -> structures.Maker:
        """The seal maker's key and certificate, valid through ``covering`` when it can be
        (issued on first use, rotated when too short: :mod:`seal.maker`)."""
        return self.making.maker(covering)

    def make(self, principal: Principal, seal_id: str, making: Making) -> SealView:
        """MakeSeal (→ made): :meth:`seal.making.SealMaking.make`."""
        return self.making.make(principal, seal_id, making)

    def file(self, principal: Principal, seal_id: str, filing_number: str, reason: str) -> SealView:
        """FileSeal (备案, → filed); a filing number is assigned when none is given."""
        number = filing_number.strip()
        if len(number) > 64:
            raise InvalidArgument.field("filing_number", "at most 64 characters")
        reason = _reason(reason, required=False)

        def apply(row: SealRow, now: datetime) -> None:
            row.filing_number = number or f"BA{now:%Y%m%d}{row.id[-8:]}"
            row.filed_at = now

        return self.executor.simple(principal, seal_id, "file", reason, apply)

    def issue(self, principal: Principal, seal_id: str, reason: str) -> SealView:
        """IssueSeal (发放, → active)."""
        reason = _reason(reason, required=False)
        return self.executor.simple(
            principal, seal_id, "issue", reason, lambda row, now: setattr(row, "issued_at", now)
        )

    def suspend(self, principal: Principal, seal_id: str, cause: str, reason: str) -> SealView:
        """SuspendSeal (挂失/停用, → suspended); the certificate goes on hold."""
        reason = _reason(reason, required=True)
        return self.executor.with_side_effect(
            principal,
            seal_id,
            "suspend",
            reason,
            lambda row: self._each(row, lambda c: self.authority.hold(principal, c, reason)),
            lambda row: self._each(row, lambda c: self.authority.release(principal, c, "undo")),
            details={"cause": cause},
        )

    def resume(self, principal: Principal, seal_id: str, reason: str) -> SealView:
        """ResumeSeal (恢复, → active); the certificate's hold is released."""
        reason = _reason(reason, required=True)
        return self.executor.with_side_effect(
            principal,
            seal_id,
            "resume",
            reason,
            lambda row: self._each(row, lambda c: self.authority.release(principal, c, reason)),
            lambda row: self._each(row, lambda c: self.authority.hold(principal, c, "undo")),
        )

    def revoke(
        self,
        principal: Principal,
        seal_id: str,
        reason: str,
        certificate_reason: int = REVOCATION_CESSATION,
    ) -> SealView:
        """RevokeSeal (注销, → revoked); the certificate is revoked (not undoable)."""
        reason = _reason(reason, required=True)
        return self.executor.with_side_effect(
            principal,
            seal_id,
            "revoke",
            reason,
            lambda row: self._each(
                row, lambda c: self.authority.revoke(principal, c, certificate_reason, reason)
            ),
            None,
            lambda row, now: setattr(row, "revoked_at", now),
            details={"certificate_reason": certificate_reason},
        )

    def destroy(self, principal: Principal, seal_id: str, reason: str) -> SealView:
        """DestroySeal (销毁, → destroyed): the key is destroyed in the key store first
        (idempotent), then the record is marked; the record stays."""
        reason = _reason(reason, required=True)
        return self.executor.with_side_effect(
            principal,
            seal_id,
            "destroy",
            reason,
            self._destroy_keys,
            None,
            lambda row, now: setattr(row, "destroyed_at", now),
        )

    def _destroy_keys(self, row: SealRow) -> None:
        """Destroy the seal's keys (an SM2 seal's SM2 and PAdES keys together; idempotent)."""
        for key_id in key_ids(row):
            self.keystore.destroy(key_id)

    @staticmethod
    def _each(row: SealRow, change: Callable[[str], None]) -> None:
        """Apply a CA change to each of the seal's certificates (an SM2 seal has two: one
        lifecycle)."""
        for certificate_id in certificate_ids(row):
            change(certificate_id)

    def remake(
        self,
        principal: Principal,
        seal_id: str,
        cause: str,
        reason: str,
        *,
        key_algorithm: str = "",
        name: str = "",
    ) -> tuple[SealView, SealView]:
        """RemakeSeal: a new seal (new key and certificate, → made) replaces the old one, which
        is revoked (keyCompromise when the cause is key compromise, else superseded)."""
        return self.making.remake(
            principal, seal_id, cause, reason, key_algorithm=key_algorithm, name=name
        )

    # --- cancelled owners ----------------------------------------------------------------------

    def on_identity_status(
        self, session: Session, identity: IdentitySummary, before: IdentityStatus, reason: str
    ) -> None:
        """Registry status listener: when a legal person (or citizen) is cancelled, its live
        seals are revoked (or their applications rejected) in the same transaction, and their
        certificates revoked in the CA right after the commit."""
        if identity.status != IdentityStatus.CANCELLED:
            return
        rows = list(
            session.scalars(
                select(SealRow)
                .where(
                    SealRow.owner_id == identity.id,
                    SealRow.status.not_in([s.value for s in LIVE_SLOT_RELEASE]),
                )
                .with_for_update()
            )
        )
        certificates: list[tuple[str, str]] = []
        now = self.now()
        text = f"owner cancelled: {reason}"[:REASON_LENGTH]
        for row in rows:
            action, found = transitions.owner_cancelled(S(row.status))
            if found.target is S.REVOKED:
                certificates.extend((row.id, c) for c in certificate_ids(row))
            self.executor.step(
                session,
                row,
                SYSTEM,
                action,
                transitions.SYSTEM,
                text,
                now,
                found=found,
                apply=_revoked_at if found.target is S.REVOKED else None,
                details={"cause": "owner_cancelled"},
            )
        if certificates:

            def revoke_certificates(_session: Session) -> None:
                self.making.revoke_certificates(
                    SYSTEM, certificates, REVOCATION_CESSATION, "owner cancelled"
                )

            event.listen(session, "after_commit", revoke_certificates, once=True)

    def reconcile_revocations(self, fence: Fence | None = None) -> int:
        """Revoke at the CA the certificates of seals revoked in the last
        :data:`RECONCILE_WINDOW` (the ``seal.reconcile`` cluster job). The owner-cancellation
        cascade revokes seals in one transaction and their certificates right *after* it: a
        process that died in between, or a CA that refused then, leaves a revoked seal whose
        certificate is still good. Revocation at the CA is idempotent, so every such certificate
        is simply revoked again; one that still fails is logged (its first failure was audited
        as ``seal.certificate_revocation_pending``). ``fence``: the job's lease, checked first.
        Returns how many certificates were confirmed revoked."""
        since = self.now() - RECONCILE_WINDOW
        with self.db.transaction() as session:
            if fence is not None:
                fence.check(session)
            rows = session.execute(
                select(SealRow.id, SealRow.certificate_id, SealRow.pdf_certificate_id).where(
                    SealRow.status.in_([S.REVOKED.value, S.DESTROYED.value]),
                    SealRow.revoked_at >= since,
                )
            ).all()
        confirmed = 0
        for seal_id, *certificates in rows:
            for certificate_id in filter(None, certificates):
                try:
                    self.authority.revoke(
                        SYSTEM, certificate_id, REVOCATION_CESSATION, "seal revoked (reconciled)"
                    )
                except Exception:  # logged; the next round tries again
                    log.warning(
                        "seal %s: its certificate %s is still not revoked at the CA",
                        seal_id,
                        certificate_id,
                        exc_info=True,
                    )
                else:
                    confirmed += 1
        return confirmed

    # --- grants and uses: :mod:`seal.usage` ------------------------------------------------------

    def grant_use(
        self,
        principal: Principal,
        seal_id: str,
        grantee: IdentityRef,
        document_kinds: Sequence[str],
        valid_from: datetime | None,
        valid_until: datetime | None,
    ) -> GrantView:
        """GrantSealUse: :meth:`seal.usage.SealUsage.grant_use`."""
        return self.usage.grant_use(
            principal, seal_id, grantee, document_kinds, valid_from, valid_until
        )

    def revoke_use(self, principal: Principal, grant_id: str, reason: str) -> GrantView:
        """RevokeSealUse: :meth:`seal.usage.SealUsage.revoke_use`."""
        return self.usage.revoke_use(principal, grant_id, reason)

    def grant_recorded(self, seal_id: str, audit_seq: int) -> GrantView:
        """The grant a seal's grant / revocation event with audit record ``audit_seq`` names:
        :meth:`seal.usage.SealUsage.grant_recorded`."""
        return self.usage.grant_recorded(seal_id, audit_seq)

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
        return self.usage.list_grants(
            principal,
            seal_id=seal_id,
            grantee=grantee,
            include_inactive=include_inactive,
            page_size=page_size,
            page_token=page_token,
        )

    def authorise_use(self, principal: Principal, seal_id: str, document_kind: str) -> UseContext:
        """May ``principal`` use the seal now: :meth:`seal.usage.SealUsage.authorise_use`."""
        return self.usage.authorise_use(principal, seal_id, document_kind)

    def department_use(self, owner_uscc: str, document_kind: str) -> UseContext:
        """A department's official seal: :meth:`seal.usage.SealUsage.department_use` (checks no
        grant: never expose it to end users)."""
        return self.usage.department_use(owner_uscc, document_kind)

    def record_use(
        self,
        principal: Principal,
        context: UseContext,
        use: Use,
        *,
        session: Session | None = None,
    ) -> EventView:
        """Record a use: :meth:`seal.usage.SealUsage.record_use`."""
        return self.usage.record_use(principal, context, use, session=session)

    def recorded_use(
        self, principal: Principal, seal_id: str, audit_seq: int, action: str
    ) -> RecordedUse:
        """A recorded use to make the output of again: :meth:`seal.usage.SealUsage.recorded_use`."""
        return self.usage.recorded_use(principal, seal_id, audit_seq, action)

    def record_reproduction(self, principal: Principal, recorded: RecordedUse) -> None:
        """Audit a use's output made again: :meth:`seal.usage.SealUsage.record_reproduction`."""
        self.usage.record_reproduction(principal, recorded)

    def record_uses(
        self, principal: Principal, context: UseContext, uses: Sequence[Use], session: Session
    ) -> list[int]:
        """Record several uses at once: :meth:`seal.usage.SealUsage.record_uses`."""
        return self.usage.record_uses(principal, context, uses, session)

    # --- queries: :mod:`seal.views` ------------------------------------------------------------

    def list_seals(
        self,
        *,
        owner: IdentityRef | None = None,
        kind: SealKind | None = None,
        statuses: Sequence[SealStatus] = (),
        page_size: int = 0,
        page_token: str = "",
        search: str = "",
    ) -> tuple[list[SealView], str]:
        """ListSeals by owner, kind and states, newest first (``search``: see
        :func:`seal.views.list_seals`)."""
        return views.list_seals(
            self.db,
            self.owners,
            owner=owner,
            kind=kind,
            statuses=statuses,
            page_size=page_size,
            page_token=page_token,
            search=search,
        )

    def with_history(
        self, seal_id: str, *, page_size: int = 0
    ) -> tuple[SealView, list[EventView], bool]:
        """A seal and the first ``page_size`` events of its history (uses included), and
        whether there are more, in one read (:func:`seal.views.with_history`: what :meth:`get`
        and :meth:`history` give, for a page showing both)."""
        return views.with_history(self.db, seal_id, page_size=page_size)

    def history(
        self,
        seal_id: str,
        *,
        include_uses: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[EventView], str]:
        """GetSealHistory: the seal's events, oldest first (uses only when asked)."""
        return views.history(
            self.db, seal_id, include_uses=include_uses, page_size=page_size, page_token=page_token
        )
