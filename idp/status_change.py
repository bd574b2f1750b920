"""Changing an identity's status: suspend (active→suspended), reinstate (suspended→active)
or cancel (→cancelled, revoking the agent grants that hang off the identity), with the
platform's status listeners told in the same transaction."""

from __future__ import annotations

import logging

from govtrust import audit
from govtrust.errors import FailedPrecondition, PreconditionViolation
from govtrust.principal import Principal
from idp.agent_grants import revoke_grants_of_cancelled
from idp.registry_state import (
    REGISTRAR,
    VERIFIER,
    RegistryState,
    raise_if,
    reason_violation,
    summary_of,
)
from idp.status_listeners import StatusListeners
from idp.types import IdentityRef, IdentityStatus, IdentitySummary, StatusAction

log = logging.getLogger("govtrust.idp")


class StatusChanges:
    """Status changes of the registry's identities, each told to ``listeners``."""

    def __init__(self, state: RegistryState, listeners: StatusListeners) -> None:
        self.state = state
        # told of every status change in its transaction (the platform's, see idp.runtime)
        self.status_listeners = listeners

    def summary(self, principal: Principal, ref: IdentityRef) -> IdentitySummary:
        """The summary (status included) of the identity ``ref`` names, of any kind, as it
        stands now; verifiers and registrars."""
        principal.require_role(VERIFIER, REGISTRAR)
        with self.state.db.read() as session:
            return summary_of(self.state.resolve(session, ref, "identity", None))

    def update_status(
        self, principal: Principal, ref: IdentityRef, action: StatusAction, reason: str
    ) -> IdentitySummary:
        """Suspend (active→suspended), reinstate (suspended→active) or cancel (→cancelled).

        Cancelling revokes the agent grants that hang off the identity (of a legal person, or
        held by a citizen) in the same transaction; status listeners run there too.
        """
        principal.require_role(REGISTRAR)
        raise_if([reason_violation("reason", reason)])
        transitions: dict[StatusAction, tuple[set[str], IdentityStatus]] = {
            StatusAction.SUSPEND: ({IdentityStatus.ACTIVE.value}, IdentityStatus.SUSPENDED),
            StatusAction.REINSTATE: ({IdentityStatus.SUSPENDED.value}, IdentityStatus.ACTIVE),
            StatusAction.CANCEL: (
                {IdentityStatus.ACTIVE.value, IdentityStatus.SUSPENDED.value},
                IdentityStatus.CANCELLED,
            ),
        }
        allowed_from, target = transitions[action]
        reason = reason.strip()
        now = self.state.now()
        with self.state.db.transaction() as session:
            row = self.state.resolve(session, ref, "identity", None)
            before = IdentityStatus(row.status)
            if row.status not in allowed_from:
                raise FailedPrecondition(
                    f"cannot {action.value} an identity that is {row.status}",
                    [
                        PreconditionViolation(
                            "STATUS",
                            f"{row.kind}:{row.id}",
                            f"{action.value} needs " + " or ".join(sorted(allowed_from)),
                        )
                    ],
                )
            row.status = target.value
            row.status_reason = reason
            row.updated_at = now
            revoked: list[str] = []
            if target is IdentityStatus.CANCELLED:
                revoked = revoke_grants_of_cancelled(session, row, principal.actor, reason, now)
            session.flush()
            summary = summary_of(row)
            audit.append(
                session,
                actor=principal.actor,
                action=f"identity.{action.value}",
                target=f"{row.kind}:{row.id}",
                details={
                    "from": before.value,
                    "to": target.value,
                    "reason": reason,
                    "revoked_grants": revoked,
                },
            )
            self.status_listeners.notify(session, summary, before, reason)
        log.info(
            "identity status changed",
            extra={"identity": row.id, "from": before.value, "to": target.value},
        )
        return summary
