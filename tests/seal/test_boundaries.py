"""Seal boundaries (issue #23 item 3) and the transition faults it found unnoticed.

Time: the service's clock is fixed to the exact second. A seal is usable until its
``valid_until`` (exclusive: expired AT that instant); a use grant is current on
``[valid_from, valid_until)``. Who: the owner never issues nor destroys its own seal (only
seal-filing does), and an agent holding only ``seal.use`` may use but never apply. Each refusal
leaves the seal, its grants, the audit log and the certificates as they were.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from govtrust.errors import PermissionDenied
from govtrust.principal import Principal
from idp.types import IdentityRef
from seal.errors import SealNotUsable, SealUseDenied
from seal.lifecycle import Application, Making
from seal.types import SealKind, SealStatus
from tests.seal.conftest import FILING, MAKER, REGISTRAR, REVIEWER, World, resident_id
from tests.unchanged import unchanged


class FixedClock:
    """A clock that moves only when told."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _fix_clock(world: World, monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(world.service, "_clock", clock)
    return clock


def test_a_seal_is_usable_until_the_second_before_its_valid_until(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seal = world.active_seal()
    assert seal.valid_until is not None
    clock = _fix_clock(world, monkeypatch)
    clock.at = seal.valid_until - timedelta(seconds=1)
    assert world.service.authorise_use(world.rep, seal.id, "contract").role == "representative"
    clock.at = seal.valid_until
    with unchanged(world.db, world.keystore), pytest.raises(SealNotUsable, match="expired"):
        world.service.authorise_use(world.rep, seal.id, "contract")


def test_a_use_grant_is_current_from_its_first_second_until_its_end(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seal = world.active_seal()
    clock = _fix_clock(world, monkeypatch)
    start = clock.at + timedelta(days=1)
    end = start + timedelta(days=7)
    world.service.grant_use(
        world.rep, seal.id, IdentityRef(id=world.user_id), ["contract"], start, end
    )
    for moment, allowed in (
        (start - timedelta(seconds=1), False),
        (start, True),
        (end - timedelta(seconds=1), True),
        (end, False),
    ):
        clock.at = moment
        if allowed:
            assert world.service.authorise_use(world.user, seal.id, "contract").role == "grantee"
        else:
            with unchanged(world.db, world.keystore), pytest.raises(SealUseDenied):
                world.service.authorise_use(world.user, seal.id, "contract")


def test_the_owner_may_not_issue_its_own_seal(world: World) -> None:
    s = world.service
    seal = s.apply(world.rep, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT))
    s.review(REVIEWER, seal.id, True, "ok")
    s.make(MAKER, seal.id, Making())
    s.file(FILING, seal.id, "", "")
    for owner in (world.rep, world.agent):
        with (
            unchanged(world.db, world.keystore),
            pytest.raises(PermissionDenied, match="needs seal-filing"),
        ):
            s.issue(owner, seal.id, "my own")
    assert s.issue(FILING, seal.id, "").status is SealStatus.ACTIVE


def test_the_owner_may_revoke_but_never_destroy_its_seal(world: World) -> None:
    s = world.service
    seal = world.active_seal()
    assert s.revoke(world.rep, seal.id, "closed").status is SealStatus.REVOKED
    for owner in (world.rep, world.agent):
        with (
            unchanged(world.db, world.keystore),
            pytest.raises(PermissionDenied, match="needs seal-filing"),
        ):
            s.destroy(owner, seal.id, "gone")
    assert s.destroy(FILING, seal.id, "gone").status is SealStatus.DESTROYED


def test_a_use_grant_alone_does_not_let_an_agent_apply(world: World) -> None:
    user_only = world.registry.register_citizen(
        REGISTRAR, name="赵七", id_number=resident_id("11010519850101007")
    ).id
    world.registry.grant_agent(
        world.rep,
        legal_person=IdentityRef(id=world.company_id),
        agent=IdentityRef(id=user_only),
        scopes=["seal.use"],
    )
    agent = Principal("user", "use-only", frozenset(), citizen_id=user_only)
    seal = world.active_seal()
    assert world.service.authorise_use(agent, seal.id, "contract").role == "agent"  # may use
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(PermissionDenied, match=r"seal\.apply"),
    ):
        world.service.apply(agent, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT))
    # the agent holding seal.apply may
    applied = world.service.apply(
        world.agent, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT)
    )
    assert applied.status is SealStatus.APPLIED
