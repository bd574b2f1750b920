"""Who may take which step (hardening issue #13, items 4, 5 and 7): only the owner applies, the
applicant never reviews, the reviewer never makes, only seal-filing destroys, and revoking a
grant answers the same to an outsider whether the grant exists or not. Every refusal leaves the
seal, its history, its key and the audit log as they were."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from govtrust.errors import PermissionDenied
from govtrust.principal import Principal
from hsm import KeyDestroyed
from idp.types import IdentityRef
from seal.lifecycle import TRANSITIONS, Application, Making
from seal.types import SealKind, SealStatus
from tests.seal.conftest import FILING, MAKER, NOBODY, REVIEWER, GrpcHandle, World
from tests.unchanged import Snapshot, unchanged


def _same(world: World) -> AbstractContextManager[Snapshot]:
    """Nothing changes: no row of any table (seals, grants, certificates, audit), no key."""
    return unchanged(world.db, world.keystore)


def test_the_transition_table_states_the_separation_of_duties() -> None:
    assert TRANSITIONS["approve"].not_after == ("apply",)
    assert TRANSITIONS["reject"].not_after == ("apply",)
    assert TRANSITIONS["make"].not_after == ("approve",)
    assert TRANSITIONS["remake"].not_after == ("approve",)
    assert TRANSITIONS["destroy"].roles == ("seal-filing",)


@pytest.mark.parametrize("staff", [REVIEWER, FILING, MAKER])
def test_no_staff_role_applies_for_a_legal_person(world: World, staff: Principal) -> None:
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(PermissionDenied, match="only the legal representative"),
    ):
        world.service.apply(staff, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT))


def test_the_applicant_never_reviews_its_own_application(world: World) -> None:
    # the representative also holds seal-reviewer (one person, two hats)
    assert world.rep.citizen_id is not None
    both = Principal("user", "rep", frozenset({"seal-reviewer"}), citizen_id=world.rep.citizen_id)
    seal = world.service.apply(
        both, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT)
    )
    for approve in (True, False):
        with (
            unchanged(world.db, world.keystore),
            pytest.raises(PermissionDenied, match="separation of duties"),
        ):
            world.service.review(both, seal.id, approve, "mine")
    # the same citizen behind another credential is the same actor
    token = Principal("user", "rep-2", frozenset({"seal-reviewer"}), citizen_id=both.citizen_id)
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(PermissionDenied, match="separation of duties"),
    ):
        world.service.review(token, seal.id, True, "mine")
    assert world.service.review(REVIEWER, seal.id, True, "ok").status is SealStatus.APPROVED


def test_the_applicant_never_reviews_under_its_staff_identity(world: World) -> None:
    """The representative applies with its citizen token; its staff record (registered as the
    same citizen, holding seal-reviewer) is the same person: a staff token carries no citizen
    id, so the registry link decides."""
    staff = world.registry.register_staff(
        Principal("user", "admin", frozenset({"admin"})),
        name="张三",
        department_code="SEAL-DEPT",
        department_name="",
        employee_number="R1",
        roles=["seal-reviewer"],
        citizen=IdentityRef(id=world.rep.citizen_id or ""),
    )
    as_staff = Principal("user", staff.id, frozenset(staff.roles))  # as a staff token resolves
    seal = world.service.apply(
        world.rep, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT)
    )
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(PermissionDenied, match="separation of duties"),
    ):
        world.service.review(as_staff, seal.id, True, "mine")


def test_the_reviewer_never_makes_the_seal_it_approved(world: World) -> None:
    both = Principal("user", "reviewer-maker", frozenset({"seal-reviewer", "seal-maker"}))
    seal = world.service.apply(
        world.rep, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT)
    )
    world.service.review(both, seal.id, True, "ok")
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(PermissionDenied, match="separation of duties"),
    ):
        world.service.make(both, seal.id, Making())
    assert world.service.make(MAKER, seal.id, Making()).status is SealStatus.MADE


def test_the_reviewer_never_remakes_the_seal_it_approved(world: World) -> None:
    both = Principal("user", "reviewer-maker", frozenset({"seal-reviewer", "seal-maker"}))
    s = world.service
    seal = s.apply(world.rep, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT))
    s.review(both, seal.id, True, "ok")
    s.make(MAKER, seal.id, Making())
    s.file(FILING, seal.id, "", "")
    s.issue(FILING, seal.id, "")
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(PermissionDenied, match="separation of duties"),
    ):
        s.remake(both, seal.id, "loss", "lost")


def test_a_seal_maker_may_not_destroy(world: World) -> None:
    seal = world.active_seal()
    world.service.revoke(FILING, seal.id, "closed")
    key_id = world.authority.get(seal.certificate_id).key_id or ""
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(PermissionDenied, match="needs seal-filing"),
    ):
        world.service.destroy(MAKER, seal.id, "gone")
    assert world.keystore.get(key_id) is not None  # the key is still there
    assert world.service.destroy(FILING, seal.id, "gone").status is SealStatus.DESTROYED
    with _same(world), pytest.raises(KeyDestroyed):
        world.keystore.get(key_id)


def test_revoking_a_grant_tells_an_outsider_nothing(world: World) -> None:
    seal = world.active_seal()
    grant = world.service.grant_use(
        world.rep, seal.id, IdentityRef(id=world.user_id), ["contract"], None, None
    )
    errors = []
    for grant_id in (grant.id, "0" * 32):
        with _same(world), pytest.raises(PermissionDenied) as info:
            world.service.revoke_use(world.agent, grant_id, "not mine")
        errors.append(str(info.value).replace(grant_id, "<id>"))
    assert errors[0] == errors[1]
    assert world.service.list_grants(world.rep, seal_id=seal.id)[0][0].revoked_at is None


def test_the_gate_refuses_before_the_servicer_reads_the_request(
    world: World, grpc_seal: GrpcHandle
) -> None:
    """A caller no rule admits gets PERMISSION_DENIED even for a malformed request or an unknown
    id: it learns neither whether the request was well-formed nor whether the grant exists."""
    import grpc

    from govtrust.v1 import seal_pb2

    with _same(world):
        for request in (
            seal_pb2.RevokeSealUseRequest(),
            seal_pb2.RevokeSealUseRequest(grant_id="0" * 32, reason="x"),
        ):
            error: Any = grpc_seal.fails("RevokeSealUse", request, NOBODY)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "may not call RevokeSealUse" in error.details()
