"""The owner's cancellation goes through the transition table and the executor, and a seal
certificate the CA does not revoke after the commit is left pending, visibly (an audit record)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from govtrust.audit import AuditRecord, verify_chain
from govtrust.lease import ClusterLease, StaleFence, acquire
from idp.types import IdentityRef, StatusAction
from seal import transitions
from seal.making import certificate_ids
from seal.models import SealEventRow, SealRow
from seal.transitions import LIVE_SLOT_RELEASE
from seal.types import SealStatus
from tests.seal.conftest import MAKER, REGISTRAR, World
from tests.unchanged import unchanged

S = SealStatus
PENDING = "seal.certificate_revocation_pending"


def test_every_live_state_has_exactly_one_cancellation() -> None:
    for status in S:
        if status in LIVE_SLOT_RELEASE:
            with pytest.raises(KeyError):
                transitions.owner_cancelled(status)
            continue
        action, found = transitions.owner_cancelled(status)
        expected = S.REJECTED if status in (S.APPLIED, S.APPROVED) else S.REVOKED
        name = "reject" if expected is S.REJECTED else "revoke"
        assert (action, found.target) == (name, expected)
        assert found.roles == (transitions.SYSTEM,)
    # the RPC table is unchanged: the system's transitions are not callers' operations
    assert set(transitions.TRANSITIONS) == {
        "approve", "reject", "make", "file", "issue", "suspend", "resume", "revoke", "destroy",
        "remake",
    }  # fmt: skip


def _break_certificate(world: World, seal_id: str) -> None:
    """Point the seal at a certificate the CA does not know: its revocation there fails."""
    with world.db.transaction() as session:
        session.execute(
            update(SealRow).where(SealRow.id == seal_id).values(certificate_id="no-such-cert")
        )


def _pending(world: World) -> list[AuditRecord]:
    with world.db.read() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.action == PENDING)))


def test_a_failed_ca_revoke_in_the_cascade_is_recorded_pending(world: World) -> None:
    broken = world.active_seal(name="合同专用章")
    fine = world.active_seal(name="财务专用章")
    _break_certificate(world, broken.id)

    world.registry.update_status(
        REGISTRAR, IdentityRef(id=world.company_id), StatusAction.CANCEL, "dissolved"
    )

    with world.db.read() as session:
        rows = {r.id: r for r in session.scalars(select(SealRow))}
        events = list(
            session.scalars(
                select(SealEventRow)
                .where(SealEventRow.seal_id == broken.id)
                .order_by(SealEventRow.sequence)
            )
        )
    assert rows[broken.id].status == rows[fine.id].status == S.REVOKED.value
    last = events[-1]
    assert (last.action, last.from_status, last.to_status, last.role) == (
        "revoke",
        "active",
        "revoked",
        "system",
    )
    # the other seal's certificate is revoked at the CA; the broken one is pending, visibly
    assert world.authority.get(fine.certificate_id).status == "revoked"
    pending = _pending(world)
    assert [(p.target, p.outcome, json.loads(p.details)["certificate_id"]) for p in pending] == [
        (f"seal/{broken.id}", "failed", "no-such-cert")
    ]
    with world.db.read() as session:
        assert verify_chain(session).ok


def test_a_failed_ca_revoke_of_a_remade_seal_is_recorded_pending(world: World) -> None:
    old = world.active_seal()
    _break_certificate(world, old.id)
    revoked, new = world.service.remake(MAKER, old.id, "damaged", "the seal was damaged")
    assert (revoked.status, new.status) == (S.REVOKED, S.MADE)
    pending = _pending(world)
    assert [(p.target, json.loads(p.details)["certificate_id"]) for p in pending] == [
        (f"seal/{old.id}", "no-such-cert")
    ]


def test_the_reconcile_job_revokes_a_certificate_the_cascade_left_good(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that dies between the cascade's commit and its CA revocations leaves the seal
    revoked and its certificate good; ``seal.reconcile`` revokes it, and a second round changes
    nothing. A stale leader's round is refused before it reads anything."""
    sealed = world.active_seal()
    with monkeypatch.context() as patched:  # the process "dies" right after the commit
        patched.setattr(world.service.making, "revoke_certificates", lambda *a, **k: [])
        world.registry.update_status(
            REGISTRAR, IdentityRef(id=world.company_id), StatusAction.CANCEL, "dissolved"
        )
    assert world.service.get(sealed.id).status is S.REVOKED
    with world.db.read() as session:
        row = session.get(SealRow, sealed.id)
        assert row is not None
        certificates = certificate_ids(row)  # an SM2 seal's own and its PAdES certificate
    assert [world.authority.get(c).status for c in certificates] == ["active"] * len(certificates)

    old = acquire(world.db, "seal.reconcile", "A", 30)
    assert old is not None
    with world.db.transaction() as session:  # the lease passes on: A's token is stale
        session.execute(
            update(ClusterLease)
            .where(ClusterLease.job == "seal.reconcile")
            .values(token=old.token + 1)
        )
    with unchanged(world.db, schedule=True), pytest.raises(StaleFence):
        world.service.reconcile_revocations(old.fence)

    assert world.service.reconcile_revocations() == len(certificates)
    assert [world.authority.get(c).status for c in certificates] == ["revoked"] * len(certificates)
    with unchanged(world.db):  # confirmed again, nothing changed
        assert world.service.reconcile_revocations() == len(certificates)
