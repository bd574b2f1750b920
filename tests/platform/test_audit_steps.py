"""The audit chain verified in bounded steps (the console's "verify now"): the steps reach the
same verdict and count as one walk, a problem in a later step is found there, and the
operators' functions refuse callers without ``ca-operator``, changing nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from govtrust import audit
from govtrust.audit import AuditRecord, ChainPosition, ChainReport, Finding, verify_chain
from govtrust.db import Database
from govtrust.errors import PermissionDenied
from govtrust.principal import Principal
from tests.unchanged import unchanged

OPERATOR = Principal("user", "operator", frozenset({"ca-operator"}))
REVIEWER = Principal("user", "reviewer", frozenset({"seal-reviewer"}))


def fill(db: Database, count: int) -> None:
    with db.transaction() as session:
        audit.append_many(
            session,
            [audit.Entry("user:t", "test.step", f"t:{n}", audit.canonical_json({"n": n}).decode())
             for n in range(count)],
        )  # fmt: skip


def walk(db: Database, step: int) -> tuple[ChainReport, int]:
    """Verify in steps of ``step``; the last report and how many steps it took."""
    position: ChainPosition | None = None
    steps = 0
    while True:
        report = audit.verify_step(db, OPERATOR, position, step)
        steps += 1
        if report.resume is None:
            return report, steps
        assert report.ok and report.records == report.resume.next_seq - 1
        position = report.resume


def test_steps_reach_the_same_verdict_as_one_walk(database: Database) -> None:
    fill(database, 23)
    with database.read() as session:
        whole = verify_chain(session, audit.chain_key(database))
    assert whole.ok and whole.records == 23 and whole.resume is None
    for step in (1, 5, 23, 100):
        report, steps = walk(database, step)
        assert report == whole
        assert steps == 23 // step + 1 if step <= 23 else steps == 1


def test_an_edit_in_a_later_step_is_found_there(database: Database) -> None:
    fill(database, 20)
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 17).values(target="t:x"))
    first = audit.verify_step(database, OPERATOR, None, 10)
    assert first.ok and first.resume is not None and first.resume.next_seq == 11
    report, _ = walk(database, 10)
    assert not report.ok and report.broken_seq == 17 and report.resume is None
    assert report.finding in (Finding.EDITED, Finding.REWRITTEN)


def test_a_deleted_record_at_a_step_boundary_is_missing(database: Database) -> None:
    from sqlalchemy import delete

    fill(database, 12)
    with database.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 7))
    report, _ = walk(database, 6)
    assert report.finding is Finding.MISSING and report.broken_seq == 7


def test_the_operators_functions_refuse_other_roles(database: Database) -> None:
    fill(database, 3)
    with unchanged(database):
        with pytest.raises(PermissionDenied):
            audit.start_verification(database, REVIEWER)
        with pytest.raises(PermissionDenied):
            audit.verify_step(database, REVIEWER, None, 10)
        with pytest.raises(PermissionDenied):
            audit.chain_status(database, REVIEWER)
    head = audit.start_verification(database, OPERATOR)
    status = audit.chain_status(database, OPERATOR)
    assert head == 4 and status.records == 4 and status.failures == []
