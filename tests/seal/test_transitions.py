"""The seal transition table as pure data (seal/transitions.py, issue #15 item 3).

No database: every state × action × role is checked against the table written out here a
second time, by hand, so that a widened (or narrowed) transition fails a test — an owner allowed
to destroy, to file or issue its own seal, a staff role allowed to apply, a reviewer allowed to
make what it approved, an agent's ``seal.use`` scope standing in for ``seal.apply``.
"""

from __future__ import annotations

import itertools

import pytest

from seal import transitions
from seal.errors import IllegalTransition
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
)
from seal.types import SealStatus

S = SealStatus
ROLES = (OWNER, REVIEWER, MAKER, FILING, "admin", "ca-operator", "verifier", "grantee", "")
STATES: tuple[SealStatus | None, ...] = (None, *SealStatus)
# action: (sources, target, roles, not_after) — written out, not read from the module
EXPECTED: dict[str, tuple[frozenset[SealStatus], SealStatus, frozenset[str], frozenset[str]]] = {
    "apply": (frozenset(), S.APPLIED, frozenset({OWNER}), frozenset()),
    "approve": (frozenset({S.APPLIED}), S.APPROVED, frozenset({REVIEWER}), frozenset({"apply"})),
    "reject": (frozenset({S.APPLIED}), S.REJECTED, frozenset({REVIEWER}), frozenset({"apply"})),
    "make": (frozenset({S.APPROVED}), S.MADE, frozenset({MAKER}), frozenset({"approve"})),
    "file": (frozenset({S.MADE}), S.FILED, frozenset({FILING}), frozenset()),
    "issue": (frozenset({S.FILED}), S.ACTIVE, frozenset({FILING}), frozenset()),
    "suspend": (frozenset({S.ACTIVE}), S.SUSPENDED, frozenset({FILING, OWNER}), frozenset()),
    "resume": (frozenset({S.SUSPENDED}), S.ACTIVE, frozenset({FILING, OWNER}), frozenset()),
    "revoke": (
        frozenset({S.ACTIVE, S.SUSPENDED}),
        S.REVOKED,
        frozenset({FILING, OWNER}),
        frozenset(),
    ),
    "destroy": (frozenset({S.REVOKED}), S.DESTROYED, frozenset({FILING}), frozenset()),
    "remake": (
        frozenset({S.ACTIVE, S.SUSPENDED}),
        S.REVOKED,
        frozenset({MAKER}),
        frozenset({"approve"}),
    ),
}
ACTIONS = tuple(EXPECTED)


def test_the_table_names_exactly_these_actions() -> None:
    assert set(TRANSITIONS) | {"apply"} == set(EXPECTED)
    assert "apply" not in TRANSITIONS
    assert transitions.transition("apply") is APPLY


@pytest.mark.parametrize("action", ACTIONS)
def test_each_transition_is_as_written(action: str) -> None:
    sources, target, roles, not_after = EXPECTED[action]
    found = transitions.transition(action)
    assert found.sources == sources
    assert found.target is target
    assert set(found.roles) == roles
    assert len(found.roles) == len(roles)  # no role listed twice
    assert set(found.not_after) == not_after
    assert set(transitions.excluded_by(action)) == not_after


@pytest.mark.parametrize(
    ("action", "role", "state"), list(itertools.product(ACTIONS, ROLES, STATES))
)
def test_every_state_action_role(action: str, role: str, state: SealStatus | None) -> None:
    sources, _, roles, _ = EXPECTED[action]
    wanted = role in roles and (state is None if action == "apply" else state in sources)
    assert transitions.may(role, action, state) is wanted


@pytest.mark.parametrize(("action", "state"), list(itertools.product(ACTIONS, SealStatus)))
def test_check_state_admits_the_sources_only(action: str, state: SealStatus) -> None:
    sources, target, _, _ = EXPECTED[action]
    assert transitions.allowed_from(action, state) is (state in sources)
    if state in sources:
        assert transitions.check_state("0000000000000001", state.value, action).target is target
    else:
        with pytest.raises(IllegalTransition) as caught:
            transitions.check_state("0000000000000001", state.value, action)
        assert str(caught.value) == f"cannot {action} a seal that is {state.value}"


@pytest.mark.parametrize("action", ACTIONS)
def test_staff_role_is_one_the_transition_names(action: str) -> None:
    roles = EXPECTED[action][2]
    for held in itertools.chain.from_iterable(
        itertools.combinations(ROLES, n) for n in range(len(ROLES) + 1)
    ):
        found = transitions.staff_role(action, set(held).__contains__)
        staff = {r for r in held if r in roles and r != OWNER}
        if staff:
            assert found in staff
        else:
            assert found is None
        assert found != OWNER
    # the first listed staff role wins when several are held
    listed = [r for r in transitions.transition(action).roles if r != OWNER]
    if listed:
        assert transitions.staff_role(action, lambda _role: True) == listed[0]


@pytest.mark.parametrize("action", ACTIONS)
def test_owner_may_only_what_the_table_says(action: str) -> None:
    assert transitions.owner_may(action) is (OWNER in EXPECTED[action][2])


def test_only_the_owner_applies() -> None:
    for role in ROLES:
        assert transitions.may(role, "apply", None) is (role == OWNER)
        for state in SealStatus:  # apply never leaves from an existing seal
            assert not transitions.may(role, "apply", state)
    assert transitions.staff_role("apply", lambda _role: True) is None


@pytest.mark.parametrize("action", ["approve", "reject", "make", "file", "issue", "destroy"])
def test_the_owner_never_reviews_makes_files_issues_or_destroys(action: str) -> None:
    assert not transitions.owner_may(action)
    for state in STATES:
        assert not transitions.may(OWNER, action, state)


def test_only_seal_filing_destroys() -> None:
    for role in ROLES:
        assert transitions.may(role, "destroy", S.REVOKED) is (role == FILING)
    assert transitions.transition("destroy").roles == (FILING,)


def test_separation_of_duties() -> None:
    # the applicant never reviews
    for review in ("approve", "reject"):
        assert transitions.separated(review, {"apply"}) == "apply"
        assert transitions.separated(review, {"approve", "make", "file"}) is None
    # the reviewer never makes, nor re-makes
    for making in ("make", "remake"):
        assert transitions.separated(making, {"approve"}) == "approve"
        assert transitions.separated(making, {"apply", "reject", "file"}) is None
    for free in ("apply", "file", "issue", "suspend", "resume", "revoke", "destroy"):
        assert transitions.separated(free, set(ACTIONS)) is None
    assert transitions.separated("approve", set()) is None
    # no role may both review and make by the table alone
    assert not set(EXPECTED["approve"][2]) & set(EXPECTED["make"][2])
    assert not set(EXPECTED["apply"][2]) & set(EXPECTED["approve"][2])


@pytest.mark.parametrize("action", ACTIONS)
def test_the_owner_acts_under_seal_apply_never_a_use_grant(action: str) -> None:
    assert transitions.owner_scope(action) == SCOPE_APPLY
    assert transitions.owner_scope(action) not in (SCOPE_USE, SCOPE_MANAGE)


def test_unknown_actions_are_refused() -> None:
    for call in (
        lambda: transitions.transition("grant_use"),
        lambda: transitions.owner_scope("seal_pdf"),
        lambda: transitions.may(FILING, "delete", S.REVOKED),
    ):
        with pytest.raises(KeyError):
            call()


def test_use_and_grants_by_state() -> None:
    assert {S.REJECTED, S.REVOKED, S.DESTROYED} == LIVE_SLOT_RELEASE
    for state in SealStatus:
        assert transitions.usable(state) is (state is S.ACTIVE)
        assert transitions.accepts_grants(state) is (
            state not in {S.REJECTED, S.REVOKED, S.DESTROYED}
        )


def test_needed_names_every_role() -> None:
    assert transitions.needed("destroy") == FILING
    assert transitions.needed("suspend") == f"{FILING} or the owner's representative"
    assert transitions.needed("apply") == "the owner's representative"


def test_every_state_is_reachable_and_listed() -> None:
    assert tuple(transitions.iter_statuses()) == tuple(SealStatus)
    reached = {t.target for t in (APPLY, *TRANSITIONS.values())}
    assert reached == set(SealStatus)


def test_offered_is_what_may_allows_for_the_roles_held() -> None:
    from seal.transitions import MAKER as MAKER_ROLE
    from seal.transitions import OWNER, REVIEWER, TRANSITIONS, may, offered

    for status in SealStatus:
        for role in (REVIEWER, MAKER_ROLE, "seal-filing"):
            expected = tuple(op for op in TRANSITIONS if may(role, op, status))
            assert offered(status, {role}.__contains__, is_owner=False) == expected
        owner = tuple(op for op in TRANSITIONS if may(OWNER, op, status))
        assert offered(status, lambda _r: False, is_owner=True) == owner
        assert offered(status, lambda _r: False, is_owner=False) == ()
    assert offered(SealStatus.APPLIED, lambda r: r == REVIEWER, is_owner=False) == (
        "approve",
        "reject",
    )
    assert offered(SealStatus.APPROVED, lambda r: r == REVIEWER, is_owner=False) == ()
