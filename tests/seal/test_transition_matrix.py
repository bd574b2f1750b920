"""Seal transitions × actor × state, from the transition table (issue #23 item 1).

Real seals are driven to every state through the domain service (seal/lifecycle.py); every
operation is then tried by every actor — staff with each seal role, ``admin``, staff without a
seal role, the owner's representative, agents of the owner with ``seal.apply``, ``agent.manage``
or ``seal.use``, a citizen holding a use grant on the seal, the applicant and the reviewer of
the same seal wearing a staff hat, a person acting for an unrelated legal person, a service
without roles — in every state. The expected answer is read from :data:`seal.lifecycle.
TRANSITIONS` as data (roles, the owner relation, source states, ``not_after``) and the history
the test itself wrote, never by calling the service's checks: refused with PermissionDenied when
no role or relation admits the actor or it took a ``not_after`` action on the seal (separation of
duties, also as the same citizen behind another credential); else IllegalTransition when the
seal is not in a source state; else the seal reaches the target state. A refusal changes
nothing: the seal (status, time, history) and the audit log stay as they were.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from govtrust.audit import AuditRecord
from govtrust.db import Database
from govtrust.errors import PermissionDenied
from govtrust.principal import Principal
from idp.types import IdentityRef
from seal.errors import IllegalTransition
from seal.lifecycle import (
    APPLY,
    OWNER,
    SCOPE_APPLY,
    SCOPE_MANAGE,
    SCOPE_USE,
    TRANSITIONS,
    Application,
    Making,
)
from seal.types import SealKind, SealStatus
from tests.seal.conftest import (
    FILING,
    MAKER,
    NOBODY,
    OTHER_USCC,
    REGISTRAR,
    REVIEWER,
    World,
    open_world,
    resident_id,
)

S = SealStatus
ADMIN = Principal("user", "admin", frozenset({"admin"}))
CA_OPERATOR = Principal("service", "ca-desk", frozenset({"ca-operator"}))
# the reviewer who approves every seal of the matrix also holds seal-maker
REVIEWER_MAKER = Principal("user", "reviewer-2", frozenset({"seal-reviewer", "seal-maker"}))


@dataclass(frozen=True)
class Actor:
    """A caller and its relation to the company owning the seals (``scopes``: an agent's)."""

    principal: Principal
    representative: bool = False
    scopes: tuple[str, ...] = ()


@dataclass
class Probe:
    """A seal in one state and who took which action on it (written by the test)."""

    seal_id: str
    state: SealStatus
    history: list[tuple[str, Principal]] = field(default_factory=list)


@dataclass
class Matrix:
    world: World
    actors: dict[str, Actor]
    grantee: Principal
    probes: dict[SealStatus, Probe] = field(default_factory=dict)
    pool: dict[SealStatus, list[Probe]] = field(default_factory=dict)
    walked: list[int] = field(default_factory=list)


def _citizen(world: World, name: str, first17: str) -> str:
    return world.registry.register_citizen(REGISTRAR, name=name, id_number=resident_id(first17)).id


@pytest.fixture(scope="module")
def matrix(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    target = tmp_path_factory.mktemp("transition-matrix") / "govtrust.db"
    shutil.copyfile(sqlite_template, target)
    database = Database(f"sqlite:///{target}")
    try:
        with open_world(database) as world:
            company = IdentityRef(id=world.company_id)
            manager_id = _citizen(world, "赵六", "11010519850101004")
            user_agent_id = _citizen(world, "钱七", "11010519860101005")
            grantee_id = _citizen(world, "孙八", "11010519870101006")
            other_rep_id = _citizen(world, "周九", "11010519880101007")
            for agent, scope in ((manager_id, SCOPE_MANAGE), (user_agent_id, SCOPE_USE)):
                world.registry.grant_agent(
                    world.rep, legal_person=company, agent=IdentityRef(id=agent), scopes=[scope]
                )
            other = world.registry.register_legal_person(
                REGISTRAR,
                uscc=OTHER_USCC,
                name="厦门另一有限公司",
                legal_representative=IdentityRef(id=other_rep_id),
            )
            rep_id = world.rep.citizen_id
            grantee = Principal("user", "grantee", frozenset(), citizen_id=grantee_id)
            actors = {
                "seal-reviewer": Actor(REVIEWER),
                "seal-maker": Actor(MAKER),
                "seal-filing": Actor(FILING),
                "admin": Actor(ADMIN),
                "ca-operator": Actor(CA_OPERATOR),
                "identity-registrar": Actor(REGISTRAR),
                "no role": Actor(NOBODY),
                "representative": Actor(world.rep, representative=True),
                "agent seal.apply+use": Actor(world.agent, scopes=(SCOPE_APPLY, SCOPE_USE)),
                "agent agent.manage": Actor(
                    Principal("user", "manager", frozenset(), citizen_id=manager_id),
                    scopes=(SCOPE_MANAGE,),
                ),
                "agent seal.use": Actor(
                    Principal("user", "user-agent", frozenset(), citizen_id=user_agent_id),
                    scopes=(SCOPE_USE,),
                ),
                "use grantee": Actor(grantee),
                # the applicant (the representative, as a citizen) with a reviewer's staff hat
                "applicant as seal-reviewer": Actor(
                    Principal("user", "rep-desk", frozenset({"seal-reviewer"}), citizen_id=rep_id),
                    representative=True,
                ),
                "reviewer as seal-maker": Actor(REVIEWER_MAKER),
                "other legal person": Actor(
                    Principal(
                        "user",
                        other.id,
                        frozenset(),
                        citizen_id=other_rep_id,
                        legal_person_id=other.id,
                    )
                ),
            }
            yield Matrix(world, actors, grantee)
    finally:
        database.dispose()


# --- driving seals ------------------------------------------------------------------------------

# How the test takes each step (and with whom, when driving a seal to a state).
STEPS: dict[str, Callable[[World, Principal, str], object]] = {
    "approve": lambda w, p, i: w.service.review(p, i, True, "ok"),
    "reject": lambda w, p, i: w.service.review(p, i, False, "incomplete"),
    "make": lambda w, p, i: w.service.make(p, i, Making()),
    "file": lambda w, p, i: w.service.file(p, i, "", ""),
    "issue": lambda w, p, i: w.service.issue(p, i, ""),
    "suspend": lambda w, p, i: w.service.suspend(p, i, "lost", "lost"),
    "resume": lambda w, p, i: w.service.resume(p, i, "found"),
    "revoke": lambda w, p, i: w.service.revoke(p, i, "closed"),
    "destroy": lambda w, p, i: w.service.destroy(p, i, "shredded"),
    "remake": lambda w, p, i: w.service.remake(p, i, "damaged", "worn out"),
}
PATHS: dict[SealStatus, tuple[tuple[str, Principal], ...]] = {}
_ahead = (
    ("approve", REVIEWER_MAKER),
    ("make", MAKER),
    ("file", FILING),
    ("issue", FILING),
)
for _n, _state in enumerate((S.APPLIED, S.APPROVED, S.MADE, S.FILED, S.ACTIVE)):
    PATHS[_state] = _ahead[:_n]
PATHS[S.REJECTED] = (("reject", REVIEWER_MAKER),)
PATHS[S.SUSPENDED] = (*PATHS[S.ACTIVE], ("suspend", FILING))
PATHS[S.REVOKED] = (*PATHS[S.ACTIVE], ("revoke", FILING))
PATHS[S.DESTROYED] = (*PATHS[S.REVOKED], ("destroy", FILING))


def drive(m: Matrix, state: SealStatus) -> Probe:
    """A new seal of the company, applied by its representative and taken to ``state``; a use
    grant goes to the grantee once it is active."""
    w = m.world
    seal = w.service.apply(w.rep, Application(IdentityRef(id=w.company_id), SealKind.CONTRACT))
    probe = Probe(seal.id, state, [("apply", w.rep)])
    for action, principal in PATHS[state]:
        STEPS[action](w, principal, seal.id)
        probe.history.append((action, principal))
        if action == "issue":
            w.service.grant_use(
                w.rep, seal.id, IdentityRef(id=m.grantee.citizen_id or ""), (), None, None
            )
    assert w.service.get(seal.id).status is state
    return probe


def unshared(
    m: Matrix, state: SealStatus, operation: str, actor: Actor, answer: SealStatus
) -> Probe:
    """A seal in ``state`` of its own for an allowed step: one an earlier allowed step left in
    that state when the table answers the same for it (its history differs), else a new one.
    Making a seal (its picture) is the slow part; reusing them keeps the matrix fast."""
    pool = m.pool.get(state, [])
    for n, candidate in enumerate(pool):
        if expected(operation, actor, candidate) == answer:
            return pool.pop(n)
    return drive(m, state)


def probe(m: Matrix, state: SealStatus) -> Probe:
    """The shared seal in ``state`` that refusals are tried on (refusals change nothing)."""
    if state not in m.probes:
        m.probes[state] = drive(m, state)
    return m.probes[state]


# --- the expected answer, from the table -------------------------------------------------------


def _has_role(principal: Principal, role: str) -> bool:
    return role in principal.roles or "admin" in principal.roles  # admin holds every role


def _same_actor(a: Principal, b: Principal) -> bool:
    return a.actor == b.actor or (a.citizen_id is not None and a.citizen_id == b.citizen_id)


def expected(operation: str, actor: Actor, p: Probe) -> type[Exception] | SealStatus:
    """PermissionDenied, IllegalTransition, or the state the seal reaches."""
    rule = TRANSITIONS[operation]
    by_role = any(_has_role(actor.principal, r) for r in rule.roles if r != OWNER)
    # the owner relation: the legal representative or an agent holding seal.apply
    as_owner = OWNER in rule.roles and (actor.representative or SCOPE_APPLY in actor.scopes)
    if not (by_role or as_owner):
        return PermissionDenied
    if any(
        action in rule.not_after and _same_actor(actor.principal, who) for action, who in p.history
    ):
        return PermissionDenied
    if p.state not in rule.sources:
        return IllegalTransition
    return rule.target


def _snapshot(w: World, seal_id: str) -> tuple[object, ...]:
    seal = w.service.get(seal_id)
    with w.db.read() as session:
        audit = session.scalar(select(func.count()).select_from(AuditRecord))
    events, _ = w.service.history(seal_id, page_size=500)
    return seal.status, seal.updated_at, seal.certificate_id, len(events), audit


STATES = tuple(PATHS)  # every state a seal can be in


@pytest.mark.parametrize("operation", list(TRANSITIONS))
def test_every_actor_in_every_state_gets_the_table_answer(matrix: Matrix, operation: str) -> None:
    w = matrix.world
    wrong: list[str] = []
    for state in STATES:
        shared = probe(matrix, state)
        for name, actor in matrix.actors.items():
            answer = expected(operation, actor, shared)
            where = f"{operation} by {name} in {state.value}"
            if isinstance(answer, SealStatus):
                fresh = unshared(matrix, state, operation, actor, answer)
                STEPS[operation](w, actor.principal, fresh.seal_id)
                reached = w.service.get(fresh.seal_id).status
                if reached is not answer:
                    wrong.append(f"{where}: reached {reached.value}, expected {answer.value}")
                fresh.state = reached
                fresh.history.append((operation, actor.principal))
                matrix.pool.setdefault(reached, []).append(fresh)
                continue
            before = _snapshot(w, shared.seal_id)
            try:
                STEPS[operation](w, actor.principal, shared.seal_id)
                wrong.append(f"{where}: allowed, expected {answer.__name__}")
            except (PermissionDenied, IllegalTransition) as error:
                if type(error) is not answer and not isinstance(error, answer):
                    wrong.append(f"{where}: {error!r}, expected {answer.__name__}")
            if _snapshot(w, shared.seal_id) != before:
                wrong.append(f"{where}: the refusal changed the seal or the audit log")
    matrix.walked.append(len(STATES) * len(matrix.actors))
    assert not wrong, "\n".join(wrong)


def test_apply_by_every_actor(matrix: Matrix) -> None:
    """``apply`` (:data:`APPLY`): only the owner's relations, never a staff role."""
    w = matrix.world
    wrong: list[str] = []
    for name, actor in matrix.actors.items():
        admitted = OWNER in APPLY.roles and (actor.representative or SCOPE_APPLY in actor.scopes)
        with w.db.read() as session:
            audit = session.scalar(select(func.count()).select_from(AuditRecord))
        try:
            seal = w.service.apply(
                actor.principal, Application(IdentityRef(id=w.company_id), SealKind.CONTRACT)
            )
            if not admitted:
                wrong.append(f"apply by {name}: allowed, expected PermissionDenied")
            elif seal.status is not APPLY.target:
                wrong.append(f"apply by {name}: reached {seal.status.value}")
        except PermissionDenied as error:
            with w.db.read() as session:
                after = session.scalar(select(func.count()).select_from(AuditRecord))
            if admitted:
                wrong.append(f"apply by {name}: {error!r}, expected to be allowed")
            if after != audit:
                wrong.append(f"apply by {name}: the refusal wrote to the audit log")
    assert not wrong, "\n".join(wrong)


def test_the_matrix_covers_every_state_and_every_actor_kind(matrix: Matrix) -> None:
    assert set(STATES) == set(SealStatus)
    assert len(matrix.actors) == 15
    assert len(TRANSITIONS) * len(STATES) * len(matrix.actors) == 1350
