"""The seal lifecycle: one state machine, enforced here and nowhere else.

    applied ─approve─▶ approved ─make─▶ made ─file─▶ filed ─issue─▶ active ⇄ suspended
       └─reject─▶ rejected
    active|suspended ─revoke─▶ revoked ─destroy─▶ destroyed
    active|suspended ─remake─▶ revoked (+ a new seal, made, that replaces it)

:data:`TRANSITIONS` says, for each operation, the states it leaves from, the state it reaches,
the roles that may take it and the earlier actions whose actor may not (separation of duties:
whoever applied never reviews, whoever reviewed never makes). Only the owner applies
(:data:`APPLY`): no staff role may. Every transition records who (principal, acting citizen, role),
when and why as a seal event and an audit record in the same transaction, and updates the seal
certificate in the CA (hold on suspend, release on resume, revoke on revoke/remake). CA calls
are made before the seal's own transaction (the embedded SQLite allows one writer at a time) and
compensated if that transaction then finds the seal changed by someone else meanwhile.

Rules: one official seal per owner at a time (also a unique column in the database); one live
business seal per number; the owner must be active to apply or use; a cancelled legal person's
seals are revoked with it (:meth:`SealService.on_identity_status`).
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, bindparam, event, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.directory import SealRecord
from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import FieldViolation, InvalidArgument, PermissionDenied
from govtrust.principal import SYSTEM, Principal
from hsm.keystore import KeyStore, SignatureScheme, default_scheme, parse_algorithm
from idp.types import IdentityRef, IdentityStatus, IdentitySummary
from seal import images, structures
from seal.authority import SealAuthority
from seal.errors import (
    IllegalTransition,
    MakerCertificateTooShort,
    SealNotFound,
    SealRuleViolation,
    SealUseDenied,
)
from seal.maker import current_maker, maker_end
from seal.maker import not_after as maker_not_after
from seal.models import REASON_LENGTH, SealEventRow, SealGrantRow, SealRow
from seal.owners import Owners, Party
from seal.types import (
    EventView,
    GrantState,
    GrantView,
    SealKind,
    SealShape,
    SealStatus,
    SealView,
)

log = logging.getLogger("govtrust.seal")

S = SealStatus
REVIEWER, MAKER, FILING = "seal-reviewer", "seal-maker", "seal-filing"
OWNER = "owner"  # the owner's representative, or an agent holding seal.apply
SCOPE_APPLY, SCOPE_USE, SCOPE_MANAGE = "seal.apply", "seal.use", "agent.manage"
DEFAULT_VALIDITY = timedelta(days=3 * 365)
MAX_VALIDITY = timedelta(days=5 * 365)
DEFAULT_PAGE = 50
MAX_PAGE = 500


@dataclass(frozen=True)
class Transition:
    """Where an operation may start, where it ends, who may take it, and who may not.

    ``not_after`` is separation of duties: the actor (principal, or the same acting citizen)
    who took any of these actions on the seal may not take this one. For ``remake`` the
    actions are looked up on the seal being replaced (the new seal has no history yet).
    """

    sources: frozenset[SealStatus]
    target: SealStatus
    roles: tuple[str, ...]
    not_after: tuple[str, ...] = ()


# ``apply`` leaves from no state: the seal does not exist yet.
APPLY = Transition(frozenset(), S.APPLIED, (OWNER,))
TRANSITIONS: dict[str, Transition] = {
    "approve": Transition(frozenset({S.APPLIED}), S.APPROVED, (REVIEWER,), ("apply",)),
    "reject": Transition(frozenset({S.APPLIED}), S.REJECTED, (REVIEWER,), ("apply",)),
    "make": Transition(frozenset({S.APPROVED}), S.MADE, (MAKER,), ("approve",)),
    "file": Transition(frozenset({S.MADE}), S.FILED, (FILING,)),
    "issue": Transition(frozenset({S.FILED}), S.ACTIVE, (FILING,)),
    "suspend": Transition(frozenset({S.ACTIVE}), S.SUSPENDED, (FILING, OWNER)),
    "resume": Transition(frozenset({S.SUSPENDED}), S.ACTIVE, (FILING, OWNER)),
    "revoke": Transition(frozenset({S.ACTIVE, S.SUSPENDED}), S.REVOKED, (FILING, OWNER)),
    "destroy": Transition(frozenset({S.REVOKED}), S.DESTROYED, (FILING,)),
    "remake": Transition(frozenset({S.ACTIVE, S.SUSPENDED}), S.REVOKED, (MAKER,), ("approve",)),
}
_LIVE_SLOT_RELEASE = {S.REJECTED, S.REVOKED, S.DESTROYED}
REVOCATION_CESSATION, REVOCATION_KEY_COMPROMISE, REVOCATION_SUPERSEDED = 5, 1, 4


def _opt(moment: datetime | None) -> datetime | None:
    return as_utc(moment) if moment is not None else None


def _reason(value: str, *, required: bool, field: str = "reason") -> str:
    text = value.strip()
    if required and not text:
        raise InvalidArgument.field(field, "a reason is required")
    if len(text) > REASON_LENGTH:
        raise InvalidArgument.field(field, f"at most {REASON_LENGTH} characters")
    return text


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
        valid_from=_opt(row.valid_from),
        valid_until=_opt(row.valid_until),
        applicant_id=row.applicant_id,
        applied_at=as_utc(row.applied_at),
        reviewed_at=_opt(row.reviewed_at),
        made_at=_opt(row.made_at),
        filed_at=_opt(row.filed_at),
        issued_at=_opt(row.issued_at),
        revoked_at=_opt(row.revoked_at),
        destroyed_at=_opt(row.destroyed_at),
        replaces_seal_id=row.replaces_seal_id,
        replaced_by_seal_id=row.replaced_by_seal_id,
        updated_at=as_utc(row.updated_at),
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
        valid_until=_opt(row.valid_until),
        state=grant_state(row, now),
        granted_by=row.granted_by,
        granted_at=as_utc(row.granted_at),
        revoked_by=row.revoked_by,
        revoked_at=_opt(row.revoked_at),
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


@dataclass(frozen=True)
class Making:
    """MakeSeal's options (0 / None: the kind's defaults)."""

    key_algorithm: str = ""
    shape: SealShape | None = None
    width_mm: int = 0
    height_mm: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Use:
    """A use of a seal being recorded (SealPdf, SignData)."""

    action: str  # seal_pdf | sign_data
    document_kind: str
    digest_algorithm: str
    digest: bytes
    reason: str = ""


@dataclass(frozen=True)
class UseContext:
    """What sealing needs once a use is authorised."""

    seal: SealView
    key_id: str
    scheme: SignatureScheme
    certificate_der: bytes
    role: str


class SealService:
    """Domain service of the seal system over one database, key store, CA and registry."""

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
        self._views: dict[str, SealView] = {}

    def now(self) -> datetime:
        """The service's clock (UTC)."""
        return self._clock()

    # --- helpers ------------------------------------------------------------------------------

    def _load(self, session: Session, seal_id: str, *, lock: bool = False) -> SealRow:
        if not seal_id:
            raise InvalidArgument.field("seal_id", "required")
        stmt = select(SealRow).where(SealRow.id == seal_id)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalar(stmt)
        if row is None:
            raise SealNotFound(f"no seal {seal_id!r}")
        return row

    def get(self, seal_id: str) -> SealView:
        """One seal (anyone authenticated may read a seal's public record)."""
        with self.db.read() as session:
            return view(self._load(session, seal_id))

    def _owner_role(self, principal: Principal, row: SealRow, scope: str) -> str | None:
        """``representative`` / ``agent`` / ``owner`` when the principal acts for the owner."""
        citizen = principal.citizen_id
        if citizen is None:
            return None
        if row.owner_kind == "citizen":
            return "owner" if citizen == row.owner_id else None
        owner = self.owners.party(IdentityRef(id=row.owner_id), "owner")
        if owner.representative_id == citizen:
            return "representative"
        if self.owners.holds_scope(row.owner_id, citizen, scope):
            return "agent"
        return None

    def _authorise(
        self, session: Session, principal: Principal, operation: str, row: SealRow
    ) -> str:
        """The role under which ``principal`` takes ``operation`` on ``row``: one of the
        transition's roles, and none of its ``not_after`` actions taken on the seal by the same
        actor; PermissionDenied otherwise."""
        role = self._role_for(principal, operation, row)
        self._separate(session, principal, operation, row.id)
        return role

    def _role_for(self, principal: Principal, operation: str, row: SealRow) -> str:
        transition = TRANSITIONS[operation]
        for role in transition.roles:
            if role != OWNER and principal.has_role(role):
                return role
        if OWNER in transition.roles:
            owner_role = self._owner_role(principal, row, SCOPE_APPLY)
            if owner_role is not None:
                return owner_role
        wanted = " or ".join(
            r if r != OWNER else "the owner's representative" for r in transition.roles
        )
        raise PermissionDenied(f"{principal.actor} may not {operation} a seal (needs {wanted})")

    def _separate(
        self, session: Session, principal: Principal, operation: str, seal_id: str
    ) -> None:
        """Separation of duties: PermissionDenied when the caller took one of the transition's
        ``not_after`` actions on this seal — as the same principal, or as the same person (its
        citizen id, or the citizen its staff identity is registered as)."""
        earlier = TRANSITIONS[operation].not_after
        if not earlier:
            return
        persons = {principal.citizen_id} if principal.citizen_id else set()
        if principal.kind == "user":
            linked = self.owners.person_of(principal.subject)
            if linked:
                persons.add(linked)
        same_actor = SealEventRow.principal == principal.actor
        if persons:
            same_actor = or_(same_actor, SealEventRow.actor_id.in_(sorted(persons)))
        taken = session.scalar(
            select(SealEventRow.action)
            .where(SealEventRow.seal_id == seal_id, SealEventRow.action.in_(earlier), same_actor)
            .limit(1)
        )
        if taken is not None:
            raise PermissionDenied(
                f"{principal.actor} may not {operation} seal {seal_id}: the actor who took "
                f"'{taken}' on it may not (separation of duties)"
            )

    @staticmethod
    def _check_state(row: SealRow, operation: str) -> Transition:
        transition = TRANSITIONS[operation]
        if SealStatus(row.status) not in transition.sources:
            raise IllegalTransition.of(row.id, operation, row.status)
        return transition

    def _record(
        self,
        session: Session,
        row: SealRow,
        principal: Principal,
        *,
        action: str,
        role: str,
        reason: str,
        from_status: str = "",
        to_status: str = "",
        details: dict[str, object] | None = None,
        use: Use | None = None,
        related_id: str = "",
        moment: datetime | None = None,
    ) -> SealEventRow:
        """Append a history event and its audit record in the caller's transaction."""
        moment = moment or self.now()
        audit_details: dict[str, object] = {
            "from": from_status,
            "to": to_status,
            "role": role,
            "reason": reason,
            "acting_citizen": principal.citizen_id or "",
            **(details or {}),
        }
        if use is not None:
            audit_details.update(
                digest_algorithm=use.digest_algorithm,
                digest=use.digest.hex(),
                document_kind=use.document_kind,
            )
        record = audit.append(
            session,
            actor=principal.actor,
            action=f"seal.{action}",
            target=f"seal/{row.id}",
            details=audit_details,
        )
        row.history_length += 1
        event_row = SealEventRow(
            seal_id=row.id,
            sequence=row.history_length,
            action=action,
            from_status=from_status,
            to_status=to_status,
            actor_id=principal.citizen_id or "",
            principal=principal.actor,
            role=role,
            reason=reason,
            occurred_at=moment,
            digest_algorithm=use.digest_algorithm if use else "",
            digest=use.digest if use else None,
            document_kind=use.document_kind if use else "",
            related_id=related_id,
            audit_seq=record.seq,
        )
        session.add(event_row)
        session.flush()
        return event_row

    @staticmethod
    def _set_status(row: SealRow, target: SealStatus, reason: str, moment: datetime) -> None:
        row.status = target.value
        row.status_reason = reason
        row.updated_at = moment
        if target in _LIVE_SLOT_RELEASE:
            row.official_owner = None
            row.business_slot = None

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
        seal_id = self._new_seal_id()
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
            status=S.APPLIED.value,
            status_reason=reason,
            shape=design.resolved_shape().value,
            width_mm=width,
            height_mm=height,
            key_algorithm="",
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
                self._record(
                    session,
                    row,
                    principal,
                    action="apply",
                    role=role,
                    reason=reason,
                    to_status=S.APPLIED.value,
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
            if owner.kind != "citizen" and self.owners.holds_scope(owner.id, citizen, SCOPE_APPLY):
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

    @staticmethod
    def _new_seal_id() -> str:
        # 电子印章编码: 16 digits, time-ordered prefix plus randomness (IA5 for esID).
        return f"{uuid.uuid4().int % 10**16:016d}"

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
        return self._simple(
            principal, seal_id, operation, reason, lambda row, now: setattr(row, "reviewed_at", now)
        )

    def _simple(
        self,
        principal: Principal,
        seal_id: str,
        operation: str,
        reason: str,
        apply: Callable[[SealRow, datetime], None] | None = None,
        details: dict[str, object] | None = None,
    ) -> SealView:
        """A transition with no external side effect."""
        with self.db.transaction() as session:
            row = self._load(session, seal_id, lock=True)
            role = self._authorise(session, principal, operation, row)
            transition = self._check_state(row, operation)
            now = self.now()
            before = row.status
            if apply is not None:
                apply(row, now)
            self._set_status(row, transition.target, reason, now)
            self._record(
                session,
                row,
                principal,
                action=operation,
                role=role,
                reason=reason,
                from_status=before,
                to_status=row.status,
                details=details,
                moment=now,
            )
            return view(row)

    # --- make, file, issue ----------------------------------------------------------------------

    def maker(self, covering: datetime | None = None) -> structures.Maker:
        """The seal maker's key and certificate, valid through ``covering`` when it can be
        (issued on first use, rotated when too short: :mod:`seal.maker`)."""
        return current_maker(self.db, self.keystore, self.authority, self.now(), covering)

    def make(self, principal: Principal, seal_id: str, making: Making) -> SealView:
        """MakeSeal (→ made): key in the key store, seal certificate from the seal CA, picture,
        and the GB/T 38540 SESeal signed by the maker."""
        reason = _reason(making.reason, required=False)
        with self.db.read() as session:
            row = self._load(session, seal_id)
            role = self._authorise(session, principal, "make", row)
        self._check_state(row, "make")
        return self._make_into(principal, row, making, reason, role, "make")

    def _make_into(
        self,
        principal: Principal,
        row: SealRow,
        making: Making,
        reason: str,
        role: str,
        operation: str,
        *,
        replaces: SealRow | None = None,
        remake_cause: str = "",
    ) -> SealView:
        algorithm = parse_algorithm(making.key_algorithm or self.default_key_algorithm).value
        design = images.SealDesign(
            SealKind(row.kind),
            row.name,
            row.business_number,
            row.taxpayer_number,
            code=row.id,
            shape=making.shape or SealShape(row.shape),
            width_mm=making.width_mm or (row.width_mm if making.shape is None else 0),
            height_mm=making.height_mm or (row.height_mm if making.shape is None else 0),
        )
        width, height = design.size_mm()
        picture = images.render_png(design, dpi=300)
        now = self.now()
        valid_until = as_utc(row.valid_until) if row.valid_until else now + DEFAULT_VALIDITY
        days = max(1, (valid_until - now).days + 1)
        # refused before any change: the maker is neither issued nor rotated when it cannot cover
        maker_ends = maker_end(self.db, self.authority, now, valid_until)
        if maker_ends < valid_until:
            raise MakerCertificateTooShort.of(
                row.id, valid_until.isoformat(), maker_ends.isoformat()
            )
        maker = self.maker(covering=valid_until)
        if maker_not_after(maker.certificate_der) < valid_until:  # a concurrent rotation
            raise MakerCertificateTooShort.of(
                row.id, valid_until.isoformat(), maker_not_after(maker.certificate_der).isoformat()
            )
        issued = self.authority.issue_seal_certificate(
            principal,
            SealRecord(
                row.id, row.owner_id, row.owner_uscc or "", row.owner_name, row.name, row.kind, True
            ),
            algorithm,
            min(days, MAX_VALIDITY.days),
        )
        from asn1crypto import x509 as ax509

        cert = ax509.Certificate.load(issued.der)
        not_after = cert["tbs_certificate"]["validity"]["not_after"].native
        valid_end = min(valid_until, not_after)
        try:
            structure = structures.build_seal(
                structures.SealContent(
                    seal_id=row.id,
                    kind_code=SealKind(row.kind).code,
                    name=row.name,
                    certificates=(issued.der,),
                    created=now,
                    valid_start=now,
                    valid_end=valid_end,
                    picture_png=picture,
                    width_mm=width,
                    height_mm=height,
                ),
                maker,
            )
            with self.db.transaction() as session:
                if replaces is None:
                    current = self._load(session, row.id, lock=True)
                    self._check_state(current, operation)
                else:
                    current = row
                before = current.status if replaces is None else ""
                current.key_algorithm = algorithm
                current.key_id = issued.key_id
                current.certificate_id = issued.certificate_id
                current.certificate_der = issued.der
                current.seal_structure = structure
                current.shape = design.resolved_shape().value
                current.width_mm, current.height_mm = width, height
                current.valid_from, current.valid_until = now, valid_end
                current.made_at = now
                if replaces is not None:
                    self._remake_old(
                        session, principal, replaces, current, role, reason, remake_cause, now
                    )
                    session.add(current)
                    session.flush()
                self._set_status(current, S.MADE, reason, now)
                self._record(
                    session,
                    current,
                    principal,
                    action="make" if replaces is None else "remake",
                    role=role,
                    reason=reason,
                    from_status=before,
                    to_status=S.MADE.value,
                    related_id=replaces.id if replaces is not None else "",
                    details={"certificate_id": issued.certificate_id, "key_algorithm": algorithm},
                    moment=now,
                )
                return view(current)
        except BaseException:
            try:
                self.authority.revoke(
                    principal,
                    issued.certificate_id,
                    REVOCATION_CESSATION,
                    "seal making did not complete",
                )
            finally:
                self.keystore.destroy(issued.key_id)
            raise

    def file(self, principal: Principal, seal_id: str, filing_number: str, reason: str) -> SealView:
        """FileSeal (备案, → filed); a filing number is assigned when none is given."""
        number = filing_number.strip()
        if len(number) > 64:
            raise InvalidArgument.field("filing_number", "at most 64 characters")
        reason = _reason(reason, required=False)

        def apply(row: SealRow, now: datetime) -> None:
            row.filing_number = number or f"BA{now:%Y%m%d}{row.id[-8:]}"
            row.filed_at = now

        return self._simple(principal, seal_id, "file", reason, apply)

    def issue(self, principal: Principal, seal_id: str, reason: str) -> SealView:
        """IssueSeal (发放, → active)."""
        reason = _reason(reason, required=False)
        return self._simple(
            principal, seal_id, "issue", reason, lambda row, now: setattr(row, "issued_at", now)
        )

    # --- suspend, resume, revoke, destroy ------------------------------------------------------

    def _with_ca(
        self,
        principal: Principal,
        seal_id: str,
        operation: str,
        reason: str,
        ca_call: Callable[[SealRow], None],
        undo: Callable[[SealRow], None] | None,
        apply: Callable[[SealRow, datetime], None] | None = None,
        details: dict[str, object] | None = None,
    ) -> SealView:
        """A transition whose CA side effect runs first, then the seal's own transaction."""
        with self.db.read() as session:
            row = self._load(session, seal_id)
            role = self._authorise(session, principal, operation, row)
        self._check_state(row, operation)
        expected = row.status
        if row.certificate_id:
            ca_call(row)
        try:
            with self.db.transaction() as session:
                current = self._load(session, seal_id, lock=True)
                if current.status != expected:
                    raise IllegalTransition.of(seal_id, operation, current.status)
                transition = TRANSITIONS[operation]
                now = self.now()
                if apply is not None:
                    apply(current, now)
                self._set_status(current, transition.target, reason, now)
                self._record(
                    session,
                    current,
                    principal,
                    action=operation,
                    role=role,
                    reason=reason,
                    from_status=expected,
                    to_status=current.status,
                    details=details,
                    moment=now,
                )
                return view(current)
        except BaseException:
            if undo is not None and row.certificate_id:
                try:
                    undo(row)
                except Exception:
                    log.exception("could not undo the CA change of seal %s", seal_id)
            raise

    def suspend(self, principal: Principal, seal_id: str, cause: str, reason: str) -> SealView:
        """SuspendSeal (挂失/停用, → suspended); the certificate goes on hold."""
        reason = _reason(reason, required=True)
        return self._with_ca(
            principal,
            seal_id,
            "suspend",
            reason,
            lambda row: self.authority.hold(principal, row.certificate_id or "", reason),
            lambda row: self.authority.release(principal, row.certificate_id or "", "undo"),
            details={"cause": cause},
        )

    def resume(self, principal: Principal, seal_id: str, reason: str) -> SealView:
        """ResumeSeal (恢复, → active); the certificate's hold is released."""
        reason = _reason(reason, required=True)
        return self._with_ca(
            principal,
            seal_id,
            "resume",
            reason,
            lambda row: self.authority.release(principal, row.certificate_id or "", reason),
            lambda row: self.authority.hold(principal, row.certificate_id or "", "undo"),
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
        return self._with_ca(
            principal,
            seal_id,
            "revoke",
            reason,
            lambda row: self.authority.revoke(
                principal, row.certificate_id or "", certificate_reason, reason
            ),
            None,
            lambda row, now: setattr(row, "revoked_at", now),
            details={"certificate_reason": certificate_reason},
        )

    def destroy(self, principal: Principal, seal_id: str, reason: str) -> SealView:
        """DestroySeal (销毁, → destroyed): the key is destroyed in the key store first
        (idempotent), then the record is marked; the record stays."""
        reason = _reason(reason, required=True)
        return self._with_ca(
            principal,
            seal_id,
            "destroy",
            reason,
            lambda row: self.keystore.destroy(row.key_id) if row.key_id else None,
            None,
            lambda row, now: setattr(row, "destroyed_at", now),
        )

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
        reason = _reason(reason, required=True)
        if len(name) > 40:
            raise InvalidArgument.field("name", "at most 40 characters")
        with self.db.read() as session:
            old = self._load(session, seal_id)
            role = self._authorise(session, principal, "remake", old)
        self._check_state(old, "remake")
        now = self.now()
        new = SealRow(
            id=self._new_seal_id(),
            owner_id=old.owner_id,
            owner_kind=old.owner_kind,
            owner_name=old.owner_name,
            owner_uscc=old.owner_uscc,
            kind=old.kind,
            name=name.strip() or old.name,
            business_number=old.business_number,
            taxpayer_number=old.taxpayer_number,
            named_person_id=old.named_person_id,
            named_person_name=old.named_person_name,
            status=S.APPROVED.value,
            status_reason="",
            shape=old.shape,
            width_mm=old.width_mm,
            height_mm=old.height_mm,
            valid_until=old.valid_until,
            applicant_id=old.applicant_id,
            applicant_actor=old.applicant_actor,
            apply_reason=old.apply_reason,
            applied_at=old.applied_at,
            reviewed_at=old.reviewed_at,
            updated_at=now,
            history_length=0,
            replaces_seal_id=old.id,
            key_algorithm="",
            official_owner=None,
            business_slot=None,
        )
        images.layout(images.SealDesign(SealKind(new.kind), new.name))
        making = Making(key_algorithm=key_algorithm, reason=reason)
        return self._remake(principal, old, new, making, reason, role, cause)

    def _remake(
        self,
        principal: Principal,
        old: SealRow,
        new: SealRow,
        making: Making,
        reason: str,
        role: str,
        cause: str,
    ) -> tuple[SealView, SealView]:
        made = self._make_into(
            principal, new, making, reason, role, "remake", replaces=old, remake_cause=cause
        )
        if old.certificate_id:
            code = REVOCATION_KEY_COMPROMISE if cause == "key_compromise" else REVOCATION_SUPERSEDED
            try:
                self.authority.revoke(principal, old.certificate_id, code, f"re-made: {reason}")
            except Exception:
                log.exception("revoking the certificate of re-made seal %s failed", old.id)
        return self.get(old.id), made

    def _remake_old(
        self,
        session: Session,
        principal: Principal,
        old: SealRow,
        new: SealRow,
        role: str,
        reason: str,
        cause: str,
        now: datetime,
    ) -> None:
        current = self._load(session, old.id, lock=True)
        self._check_state(current, "remake")
        before = current.status
        slot_official, slot_business = current.official_owner, current.business_slot
        current.replaced_by_seal_id = new.id
        current.revoked_at = now
        self._set_status(current, S.REVOKED, reason, now)
        session.flush()  # release the official / business slot before the new seal takes it
        new.official_owner, new.business_slot = slot_official, slot_business
        self._record(
            session,
            current,
            principal,
            action="remake",
            role=role,
            reason=reason,
            from_status=before,
            to_status=S.REVOKED.value,
            related_id=new.id,
            details={"cause": cause, "replaced_by": new.id},
            moment=now,
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
                    SealRow.status.not_in([s.value for s in _LIVE_SLOT_RELEASE]),
                )
                .with_for_update()
            )
        )
        certificates: list[str] = []
        now = self.now()
        for row in rows:
            previous = row.status
            target = S.REJECTED if previous in (S.APPLIED, S.APPROVED) else S.REVOKED
            text = f"owner cancelled: {reason}"[:REASON_LENGTH]
            if target is S.REVOKED:
                row.revoked_at = now
                if row.certificate_id:
                    certificates.append(row.certificate_id)
            self._set_status(row, target, text, now)
            self._record(
                session,
                row,
                SYSTEM,
                action="revoke" if target is S.REVOKED else "reject",
                role="system",
                reason=text,
                from_status=previous,
                to_status=target.value,
                details={"cause": "owner_cancelled"},
                moment=now,
            )
        if certificates:

            def revoke_certificates(_session: Session) -> None:
                for certificate_id in certificates:
                    try:
                        self.authority.revoke(
                            SYSTEM, certificate_id, REVOCATION_CESSATION, "owner cancelled"
                        )
                    except Exception:
                        log.exception("revoking seal certificate %s failed", certificate_id)

            event.listen(session, "after_commit", revoke_certificates, once=True)

    # --- grants ---------------------------------------------------------------------------------

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
            row = self._load(session, seal_id)
        role = self._owner_role(principal, row, SCOPE_MANAGE)
        if role is None:
            raise PermissionDenied(
                f"{principal.actor} may not grant the use of seal {seal_id}: only the owner's "
                "legal representative or an agent holding agent.manage may"
            )
        with self.db.transaction() as session:
            row = self._load(session, seal_id, lock=True)
            if SealStatus(row.status) in _LIVE_SLOT_RELEASE:
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
            self._record(
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
        reason = _reason(reason, required=True)
        denied = PermissionDenied(
            f"{principal.actor} may not revoke seal grant {grant_id!r}: only its grantee, the "
            "owner's legal representative or an agent holding agent.manage may"
        )
        with self.db.transaction() as session:
            grant = session.get(SealGrantRow, grant_id, with_for_update=True)
            if grant is None:
                raise denied
            row = self._load(session, grant.seal_id, lock=True)
            if principal.citizen_id is not None and principal.citizen_id == grant.grantee_id:
                role = "grantee"
            else:
                owner_role = self._owner_role(principal, row, SCOPE_MANAGE)
                if owner_role is None:
                    raise denied
                role = owner_role
            if grant.revoked_at is not None:
                raise SealRuleViolation.rule(f"grant/{grant_id}", "the grant is already revoked")
            now = self.now()
            grant.revoked_at = now
            grant.revoked_by = principal.citizen_id or principal.actor
            grant.revoke_reason = reason
            self._record(
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
        return _page(views, page_size, page_token)

    # --- queries --------------------------------------------------------------------------------

    def list_seals(
        self,
        *,
        owner: IdentityRef | None = None,
        kind: SealKind | None = None,
        statuses: Sequence[SealStatus] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[SealView], str]:
        """ListSeals by owner, kind and states, newest first."""
        stmt = select(SealRow)
        if owner is not None and not owner.is_empty:
            stmt = stmt.where(SealRow.owner_id == self.owners.party(owner, "owner").id)
        if kind is not None:
            stmt = stmt.where(SealRow.kind == kind.value)
        if statuses:
            stmt = stmt.where(SealRow.status.in_([s.value for s in statuses]))
        size, offset = _paging(page_size, page_token)
        stmt = stmt.order_by(SealRow.applied_at.desc(), SealRow.id.desc())
        with self.db.read() as session:
            rows = list(session.scalars(stmt.offset(offset).limit(size + 1)))
        token = _token(offset + size) if len(rows) > size else ""
        return [view(r) for r in rows[:size]], token

    def history(
        self,
        seal_id: str,
        *,
        include_uses: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[EventView], str]:
        """GetSealHistory: the seal's events, oldest first (uses only when asked)."""
        size, offset = _paging(page_size, page_token)
        stmt = select(SealEventRow).where(SealEventRow.seal_id == seal_id)
        if not include_uses:
            stmt = stmt.where(SealEventRow.action.not_in(["seal_pdf", "sign_data"]))
        with self.db.read() as session:
            self._load(session, seal_id)
            rows = list(
                session.scalars(stmt.order_by(SealEventRow.sequence).offset(offset).limit(size + 1))
            )
        token = _token(offset + size) if len(rows) > size else ""
        return [event_view(r) for r in rows[:size]], token

    # --- use ------------------------------------------------------------------------------------

    def _use_view(self, seal_id: str) -> SealView:
        """The seal's view for sealing (its picture and certificate never change once made),
        cached per process; status is always read fresh by the callers."""
        cached = self._views.get(seal_id)
        if cached is None:
            cached = self.get(seal_id)
            if len(self._views) > 1024:
                self._views.clear()
            self._views[seal_id] = cached
        return cached

    def authorise_use(self, principal: Principal, seal_id: str, document_kind: str) -> UseContext:
        """Check that ``principal`` may use the seal now: the seal is active (and not expired),
        its owner active, and the caller holds a current grant (for ``document_kind``) or is
        the owner's representative, an agent holding seal.use, or the citizen owning a
        personal seal. Two small queries on the hot path."""
        from seal.errors import SealNotUsable

        if not seal_id:
            raise InvalidArgument.field("seal_id", "required")
        citizen = principal.citizen_id
        now = self.now()
        with self.db.read() as session:
            row = session.connection().execute(_USE_SEAL, {"seal_id": seal_id}).first()
            if row is None:
                raise SealNotFound(f"no seal {seal_id!r}")
            status, owner_id, owner_kind, valid_until, key_id, algorithm, certificate = row
            if status != S.ACTIVE.value:
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
        assert key_id is not None and certificate is not None
        return UseContext(
            self._use_view(seal_id),
            key_id,
            default_scheme(parse_algorithm(algorithm)),
            certificate,
            role,
        )

    def department_use(self, owner_uscc: str, document_kind: str) -> UseContext:
        """The active official seal (法定名称章) of the legal person ``owner_uscc`` as a use
        context, for a domain service that has itself authorised the caller for that
        department (licence issuance checks ``licence-issuer:<uscc>``). It checks no grant:
        never expose it to end users. Raises SealNotFound when the department has no official
        seal, SealNotUsable when it is not active, expired or its owner is not active."""
        from seal.errors import SealNotUsable

        if not owner_uscc:
            raise InvalidArgument.field("issuer_code", "required")
        with self.db.read() as session:
            row = session.connection().execute(_DEPARTMENT_SEAL, {"uscc": owner_uscc}).first()
        if row is None:
            raise SealNotFound(f"department {owner_uscc} has no official seal")
        seal_id, status, owner_id, valid_until, key_id, algorithm, certificate = row
        if status != S.ACTIVE.value:
            raise SealNotUsable.because(seal_id, f"the seal is {status}, not active")
        if valid_until is not None and as_utc(valid_until) <= self.now():
            raise SealNotUsable.because(seal_id, "the seal has expired")
        _, active = self.owners.representative(owner_id)
        if not active:
            raise SealNotUsable.because(seal_id, "the seal's owner is not active")
        assert key_id is not None and certificate is not None
        return UseContext(
            self._use_view(seal_id),
            key_id,
            default_scheme(parse_algorithm(algorithm)),
            certificate,
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
        from seal.errors import SealNotUsable

        seal_id = context.seal.id
        moment = self.now()
        connection = session.connection()  # Core, not ORM-enabled DML: no session sync
        sequence = connection.execute(_USE_COUNT, {"seal_id": seal_id}).scalar()
        if sequence is None:
            raise SealNotUsable.because(seal_id, "the seal is no longer active")
        details: dict[str, object] = {
            "role": context.role,
            "reason": use.reason,
            "acting_citizen": principal.citizen_id or "",
            "digest_algorithm": use.digest_algorithm,
            "digest": use.digest.hex(),
            "document_kind": use.document_kind,
        }
        record = audit.append(
            session,
            actor=principal.actor,
            action=f"seal.{use.action}",
            target=f"seal/{seal_id}",
            details=details,
        )
        values = {
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
            "audit_seq": record.seq,
        }
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


# Statements of the use hot path, built once (SQLAlchemy caches their compiled form).
_USE_SEAL = select(
    SealRow.status,
    SealRow.owner_id,
    SealRow.owner_kind,
    SealRow.valid_until,
    SealRow.key_id,
    SealRow.key_algorithm,
    SealRow.certificate_der,
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
_USE_COUNT = (
    update(_SEALS)
    .where(_SEALS.c.id == bindparam("seal_id"), _SEALS.c.status == S.ACTIVE.value)
    .values(history_length=_SEALS.c.history_length + 1)
    .returning(_SEALS.c.history_length)
)


def _paging(page_size: int, page_token: str) -> tuple[int, int]:
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    offset = 0
    if page_token:
        try:
            offset = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument.field("page_token", "not a token this service issued") from None
    return size, offset


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _page(items: list[GrantView], page_size: int, page_token: str) -> tuple[list[GrantView], str]:
    size, offset = _paging(page_size, page_token)
    chunk = items[offset : offset + size]
    return chunk, _token(offset + size) if len(items) > offset + size else ""


def iter_statuses() -> Iterator[SealStatus]:
    """Every state (for documentation and tests)."""
    yield from SealStatus
