"""The seal transition table: states, actions, who may take each from where, and who may not.

    applied ─approve─▶ approved ─make─▶ made ─file─▶ filed ─issue─▶ active ⇄ suspended
       └─reject─▶ rejected
    active|suspended ─revoke─▶ revoked ─destroy─▶ destroyed
    active|suspended ─remake─▶ revoked (+ a new seal, made, that replaces it)

Pure data and pure decisions (no database, no I/O): :data:`TRANSITIONS` says, for each
operation, the states it leaves from, the state it reaches, the roles that may take it and the
earlier actions whose actor may not (separation of duties: whoever applied never reviews,
whoever reviewed never makes). Only the owner applies (:data:`APPLY`): no staff role may; only
``seal-filing`` destroys. :mod:`seal.executor` applies a decided transition to storage,
``govtrust/api/access.py`` derives the RPC gate and the docs/security.md tables from this table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from seal.errors import IllegalTransition
from seal.types import SealStatus

S = SealStatus
REVIEWER, MAKER, FILING = "seal-reviewer", "seal-maker", "seal-filing"
OWNER = "owner"  # the owner's representative, or an agent holding seal.apply
SCOPE_APPLY, SCOPE_USE, SCOPE_MANAGE = "seal.apply", "seal.use", "agent.manage"


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
SYSTEM = "system"
# The owner's cancellation (a registry status change, not an RPC): the system takes it in the
# registry's transaction on every live seal of the owner, recorded as ``reject`` (not yet made)
# or ``revoke`` (made or later) with the cause ``owner_cancelled``.
OWNER_CANCELLED: dict[str, Transition] = {
    "reject": Transition(frozenset({S.APPLIED, S.APPROVED}), S.REJECTED, (SYSTEM,)),
    "revoke": Transition(frozenset({S.MADE, S.FILED, S.ACTIVE, S.SUSPENDED}), S.REVOKED, (SYSTEM,)),
}
# States that free the owner's official / business slot and admit no new use grant.
LIVE_SLOT_RELEASE = frozenset({S.REJECTED, S.REVOKED, S.DESTROYED})


def transition(operation: str) -> Transition:
    """The operation's transition (``apply`` included); KeyError for an unknown operation."""
    return APPLY if operation == "apply" else TRANSITIONS[operation]


def allowed_from(operation: str, status: SealStatus) -> bool:
    """Whether ``operation`` may leave from ``status``."""
    return status in transition(operation).sources


def owner_cancelled(status: SealStatus) -> tuple[str, Transition]:
    """The action (``reject`` / ``revoke``) and transition the owner's cancellation takes a
    seal in ``status`` by; KeyError for a seal that is no longer live."""
    for action, found in OWNER_CANCELLED.items():
        if status in found.sources:
            return action, found
    raise KeyError(status)


def check_state(
    seal_id: str, status: str, operation: str, found: Transition | None = None
) -> Transition:
    """The transition (``operation``'s, or ``found``) when it may leave from ``status``;
    IllegalTransition if not."""
    found = found or transition(operation)
    if SealStatus(status) not in found.sources:
        raise IllegalTransition.of(seal_id, operation, status)
    return found


def staff_role(operation: str, has_role: Callable[[str], bool]) -> str | None:
    """The first staff role of the transition the caller holds (by ``has_role``), if any."""
    for role in transition(operation).roles:
        if role != OWNER and has_role(role):
            return role
    return None


def owner_may(operation: str) -> bool:
    """Whether the owner (its representative, an agent, a personal seal's citizen) may."""
    return OWNER in transition(operation).roles


def owner_scope(operation: str) -> str:
    """The agent scope that lets an agent act as the owner in ``operation``: always
    ``seal.apply`` (a ``seal.use`` grant or scope never lets anyone apply, suspend or revoke)."""
    transition(operation)  # KeyError for an unknown operation
    return SCOPE_APPLY


def may(role: str, operation: str, status: SealStatus | None) -> bool:
    """Whether ``role`` (a staff role or :data:`OWNER`) may take ``operation`` from ``status``
    (``None``: the seal does not exist yet, which only ``apply`` leaves from)."""
    found = transition(operation)
    if role not in found.roles:
        return False
    return status is None if operation == "apply" else status in found.sources


def excluded_by(operation: str) -> tuple[str, ...]:
    """The earlier actions whose actor may not take ``operation`` (separation of duties)."""
    return transition(operation).not_after


def separated(operation: str, earlier_actions: frozenset[str] | set[str]) -> str | None:
    """The earlier action (taken by this actor on the seal) that bars it from ``operation``."""
    for action in excluded_by(operation):
        if action in earlier_actions:
            return action
    return None


def needed(operation: str) -> str:
    """Who may take ``operation``, in words (for PermissionDenied)."""
    return " or ".join(
        r if r != OWNER else "the owner's representative" for r in transition(operation).roles
    )


def accepts_grants(status: SealStatus) -> bool:
    """Whether a seal in ``status`` may be granted for use (not rejected, revoked, destroyed)."""
    return status not in LIVE_SLOT_RELEASE


def usable(status: SealStatus) -> bool:
    """Whether a seal in ``status`` may be used (sealing needs an active seal)."""
    return status is S.ACTIVE


def iter_statuses() -> Iterator[SealStatus]:
    """Every state (for documentation and tests)."""
    yield from SealStatus


def offered(
    status: SealStatus, has_role: Callable[[str], bool], *, is_owner: bool
) -> tuple[str, ...]:
    """The operations a caller may take on a seal in ``status`` (staff roles by ``has_role``,
    the owner's when ``is_owner``), in table order: what a user interface shows. The domain
    re-checks each when it is taken (role, state and separation of duties)."""
    return tuple(
        operation
        for operation, found in TRANSITIONS.items()
        if status in found.sources
        and (staff_role(operation, has_role) is not None or (is_owner and OWNER in found.roles))
    )
