"""The one executor of seal transitions: it applies a decided transition to storage.

The decisions are :mod:`seal.transitions`' (states, roles, separation of duties); the executor
loads the seal, asks the table, looks up the caller's relation to the owner and its earlier
actions, then changes the row and appends the history event and its audit record in one
transaction. A transition with an external side effect (the CA's hold / release / revoke, the
key store's destroy) runs it first (the embedded SQLite allows one writer at a time) and
compensates it (:meth:`Executor.with_side_effect`'s ``undo``) when the seal's own transaction
then fails or finds the seal changed by someone else meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from govtrust import audit
from govtrust.db import Database
from govtrust.errors import InvalidArgument, PermissionDenied
from govtrust.principal import Principal
from idp.types import IdentityRef
from seal import transitions
from seal.errors import IllegalTransition
from seal.models import REASON_LENGTH, SealEventRow, SealRow
from seal.owners import Owners
from seal.transitions import LIVE_SLOT_RELEASE
from seal.types import SealStatus, SealView
from seal.views import load, view

log = logging.getLogger("govtrust.seal")

REVOCATION_CESSATION, REVOCATION_KEY_COMPROMISE, REVOCATION_SUPERSEDED = 5, 1, 4


def reason_text(value: str, *, required: bool, field: str = "reason") -> str:
    """A transition's reason, stripped; InvalidArgument when missing (if required) or too long."""
    text = value.strip()
    if required and not text:
        raise InvalidArgument.field(field, "a reason is required")
    if len(text) > REASON_LENGTH:
        raise InvalidArgument.field(field, f"at most {REASON_LENGTH} characters")
    return text


def set_status(row: SealRow, target: SealStatus, reason: str, moment: datetime) -> None:
    """Move the row to ``target``; a terminal state frees its official / business slot."""
    row.status = target.value
    row.status_reason = reason
    row.updated_at = moment
    if target in LIVE_SLOT_RELEASE:
        row.official_owner = None
        row.business_slot = None


def record(
    session: Session,
    row: SealRow,
    principal: Principal,
    *,
    action: str,
    role: str,
    reason: str,
    moment: datetime,
    from_status: str = "",
    to_status: str = "",
    details: dict[str, object] | None = None,
    related_id: str = "",
) -> SealEventRow:
    """Append a history event and its audit record in the caller's transaction (a use is
    recorded by :meth:`seal.usage.SealUsage.record_use`, on its own hot path)."""
    audit_details: dict[str, object] = {
        "from": from_status,
        "to": to_status,
        "role": role,
        "reason": reason,
        "acting_citizen": principal.citizen_id or "",
        **(details or {}),
    }
    entry = audit.append(
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
        digest_algorithm="",
        digest=None,
        document_kind="",
        related_id=related_id,
        audit_seq=entry.seq,
    )
    session.add(event_row)
    session.flush()
    return event_row


class Executor:
    """Authorises and applies seal transitions over one database and owner registry."""

    def __init__(self, db: Database, owners: Owners, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.owners = owners
        self.now = clock

    def owner_role(self, principal: Principal, row: SealRow, scope: str) -> str | None:
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

    def authorise(
        self, session: Session, principal: Principal, operation: str, row: SealRow
    ) -> str:
        """The role under which ``principal`` takes ``operation`` on ``row``: one of the
        transition's roles, and none of its ``not_after`` actions taken on the seal by the same
        actor; PermissionDenied otherwise."""
        role = self.role_for(principal, operation, row)
        self.separate(session, principal, operation, row.id)
        return role

    def role_for(self, principal: Principal, operation: str, row: SealRow) -> str:
        """The transition's role the principal holds, or its relation to the owner."""
        role = transitions.staff_role(operation, principal.has_role)
        if role is not None:
            return role
        if transitions.owner_may(operation):
            owner_role = self.owner_role(principal, row, transitions.owner_scope(operation))
            if owner_role is not None:
                return owner_role
        raise PermissionDenied(
            f"{principal.actor} may not {operation} a seal (needs {transitions.needed(operation)})"
        )

    def separate(
        self, session: Session, principal: Principal, operation: str, seal_id: str
    ) -> None:
        """Separation of duties: PermissionDenied when the caller took one of the transition's
        ``not_after`` actions on this seal — as the same principal, or as the same person (its
        citizen id, or the citizen its staff identity is registered as)."""
        earlier = transitions.excluded_by(operation)
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

    def simple(
        self,
        principal: Principal,
        seal_id: str,
        operation: str,
        reason: str,
        apply: Callable[[SealRow, datetime], None] | None = None,
        details: dict[str, object] | None = None,
    ) -> SealView:
        """A transition with no external side effect, in one transaction."""
        with self.db.transaction() as session:
            row = load(session, seal_id, lock=True)
            role = self.authorise(session, principal, operation, row)
            return self._commit(session, row, principal, operation, role, reason, apply, details)

    def step(
        self,
        session: Session,
        row: SealRow,
        principal: Principal,
        operation: str,
        role: str,
        reason: str,
        moment: datetime,
        *,
        found: transitions.Transition | None = None,
        action: str = "",
        from_status: str | None = None,
        apply: Callable[[SealRow, datetime], None] | None = None,
        details: dict[str, object] | None = None,
        related_id: str = "",
    ) -> SealEventRow:
        """Inside the caller's transaction: check ``operation`` (or ``found``) against the table
        from the row's status, apply the row's own changes, move it to the transition's target
        and append the event (``action``, default the operation) and its audit record. Every
        status change of a seal goes through here."""
        transition = transitions.check_state(row.id, row.status, operation, found)
        before = row.status
        if apply is not None:
            apply(row, moment)
        set_status(row, transition.target, reason, moment)
        return record(
            session,
            row,
            principal,
            action=action or operation,
            role=role,
            reason=reason,
            from_status=before if from_status is None else from_status,
            to_status=row.status,
            details=details,
            related_id=related_id,
            moment=moment,
        )

    def _commit(
        self,
        session: Session,
        row: SealRow,
        principal: Principal,
        operation: str,
        role: str,
        reason: str,
        apply: Callable[[SealRow, datetime], None] | None,
        details: dict[str, object] | None,
    ) -> SealView:
        """Inside the seal's transaction: the row's own changes, the new status and the event."""
        self.step(
            session,
            row,
            principal,
            operation,
            role,
            reason,
            self.now(),
            apply=apply,
            details=details,
        )
        return view(row)

    def with_side_effect(
        self,
        principal: Principal,
        seal_id: str,
        operation: str,
        reason: str,
        side_effect: Callable[[SealRow], None],
        undo: Callable[[SealRow], None] | None,
        apply: Callable[[SealRow, datetime], None] | None = None,
        details: dict[str, object] | None = None,
    ) -> SealView:
        """A transition whose external side effect (CA, key store) runs first, then the seal's
        own transaction; ``undo`` compensates the side effect when that transaction fails or
        finds the seal changed meanwhile (None: not undoable, e.g. a revocation)."""
        with self.db.read() as session:
            row = load(session, seal_id)
            role = self.authorise(session, principal, operation, row)
        transitions.check_state(row.id, row.status, operation)  # before the side effect
        expected = row.status
        if row.certificate_id:
            side_effect(row)
        try:
            with self.db.transaction() as session:
                current = load(session, seal_id, lock=True)
                if current.status != expected:
                    raise IllegalTransition.of(seal_id, operation, current.status)
                return self._commit(
                    session,
                    current,
                    principal,
                    operation,
                    role,
                    reason,
                    apply,
                    details,
                )
        except BaseException:
            if undo is not None and row.certificate_id:
                try:
                    undo(row)
                except Exception:
                    log.exception("could not undo the CA change of seal %s", seal_id)
            raise
