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
