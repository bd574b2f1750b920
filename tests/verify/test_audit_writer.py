"""The verification audit writer keeps answering when a waiter gives up (a cancelled call)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from govtrust.audit import AuditRecord
from govtrust.db import Database
from verify.service import AuditWriter


def _count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def test_a_cancelled_waiter_does_not_stop_the_writer(database: Database) -> None:
    writer = AuditWriter(database, linger_ms=50)
    before = _count(database)
    record = {"actor": "t", "action": "verify.certificate", "outcome": "VALID", "details": {}}
    given_up = writer.submit(target="a", **record)  # type: ignore[arg-type]
    assert given_up.cancel()  # the caller went away while the batch lingered
    kept = writer.submit(target="b", **record)  # type: ignore[arg-type]
    kept.result(timeout=30)
    later = writer.submit(target="c", **record)  # type: ignore[arg-type]
    later.result(timeout=30)  # the writer thread is still serving
    assert _count(database) > before


@pytest.mark.asyncio
async def test_cancelling_the_call_does_not_cancel_its_audit_record(database: Database) -> None:
    from govtrust.api.verify import finished
    from verify.service import Verified

    writer = AuditWriter(database, linger_ms=200)
    record = {"actor": "t", "action": "verify.certificate", "outcome": "VALID", "details": {}}
    future = writer.submit(target="x", **record)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(finished(Verified(None, None, future)))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wrap_future(future)  # still written
    assert not future.cancelled()


@pytest.mark.serial  # a lone commit within 1.9 s
def test_commits_are_spaced_by_the_interval_and_a_lone_record_is_not_held(
    database: Database,
) -> None:
    """The first record after a quiet spell is committed after the linger only; the next commit
    waits for the interval; everything submitted meanwhile shares it (one grouped record)."""
    import time

    writer = AuditWriter(database, linger_ms=0, interval_ms=2000)
    record = {"actor": "t", "action": "verify.certificate", "outcome": "VALID", "details": {}}
    started = time.monotonic()
    writer.submit(target="first", **record).result(timeout=30)  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.9  # not held for the interval
    before = _count(database)
    futures = [
        writer.submit(target=f"t{i}", **record)  # type: ignore[arg-type]
        for i in range(20)
    ]
    time.sleep(0.3)
    assert not any(f.done() for f in futures)  # within the interval of the first commit
    for future in futures:
        future.result(timeout=30)
    assert _count(database) == before + 1  # one commit, one grouped record for the 20


def test_a_filled_batch_is_committed_without_waiting_for_its_deadline(database: Database) -> None:
    """The submit that fills a lingering batch wakes the writer: the batch goes at once, not at
    the end of a linger far longer than the test."""
    import time

    writer = AuditWriter(database, batch_size=4, linger_ms=60_000)
    record = {"actor": "t", "action": "verify.certificate", "outcome": "VALID", "details": {}}
    started = time.monotonic()
    futures = [
        writer.submit(target=f"full{i}", **record)  # type: ignore[arg-type]
        for i in range(4)
    ]
    for future in futures:
        future.result(timeout=30)
    assert time.monotonic() - started < 30
    lone = writer.submit(target="lone", **record)  # type: ignore[arg-type]
    time.sleep(0.2)
    assert not lone.done()  # a batch of one waits for its linger
