"""The time-stamp token ledger (``ca.tsa_ledger.TokenLedger``): every granted token is recorded
before it is answered, concurrent tokens share one commit, a failed batch stores nothing and
every caller of it learns so, and a process killed right after an answer keeps the record.
On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import tsp
from sqlalchemy import func, select

from ca import tsa
from ca.authority import CertificateAuthority
from ca.models import CaTsaToken
from ca.tsa import TimeStampResponse, TsaResult
from ca.tsa_ledger import (
    DeferredRecords,
    PendingToken,
    TokenLedger,
    deferring,
    submit_together,
)
from govtrust.db import Database
from tests.unchanged import unchanged

REPO = Path(__file__).resolve().parents[2]


def _query(data: bytes, nonce: int = 7) -> bytes:
    request = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(data).digest(),
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return bytes(request.dump())


def _rows(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(CaTsaToken)) or 0)


def _serial(der: bytes) -> str:
    token = tsp.TimeStampResp.load(der)["time_stamp_token"]
    info = token["content"]["encap_content_info"]["content"].parsed
    return f"{info['serial_number'].native:X}"


def _pending(serial: str) -> PendingToken:
    return PendingToken(serial, datetime.now(UTC).replace(microsecond=0), "1.2.3", "sha256", "00")


class _Gate:
    """Holds the ledger's first commit until released (and counts the batch sizes)."""

    def __init__(self, ledger: TokenLedger) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []
        original = ledger._commit

        def gated(batch: list[PendingToken]) -> None:
            self.sizes.append(len(batch))
            self.entered.set()
            self.release.wait(30)
            original(batch)

        ledger._commit = gated  # type: ignore[method-assign]


def test_a_token_is_answered_only_once_its_record_is_committed(
    authority: CertificateAuthority,
) -> None:
    ctx = authority.ctx
    gate = _Gate(ctx.tsa_ledger)
    results: list[TsaResult] = []
    authority.timestamp_nowait(_query(b"document"), results.append)
    assert gate.entered.wait(30)
    assert results == [] and _rows(ctx.db) == 0  # signed, not yet recorded: not answered
    gate.release.set()
    for _ in range(300):
        if results:
            break
        threading.Event().wait(0.1)
    assert len(results) == 1 and results[0].granted
    with ctx.db.read() as session:
        row = session.get(CaTsaToken, _serial(results[0].der))
    assert row is not None and row.message_imprint == hashlib.sha256(b"document").hexdigest()


def test_concurrent_tokens_share_commits(authority: CertificateAuthority) -> None:
    ctx = authority.ctx
    gate = _Gate(ctx.tsa_ledger)
    results: list[TsaResult] = []
    lock = threading.Lock()

    def answered(result: TsaResult) -> None:
        with lock:
            results.append(result)

    for index in range(40):
        authority.timestamp_nowait(_query(b"doc %d" % index, index), answered)
    assert gate.entered.wait(30)
    gate.release.set()
    for _ in range(300):
        if len(results) == 40:
            break
        threading.Event().wait(0.1)
    assert len(results) == 40 and all(r.granted for r in results)
    assert sum(gate.sizes) == 40 and max(gate.sizes) >= 20  # a few commits, not forty
    assert _rows(ctx.db) == 40
    serials = {_serial(r.der) for r in results}
    with ctx.db.read() as session:
        stored = set(session.scalars(select(CaTsaToken.serial)))
    assert serials == stored


def test_blocking_callers_in_threads_are_all_recorded(authority: CertificateAuthority) -> None:
    ctx = authority.ctx
    results: list[TsaResult] = []

    def worker(index: int) -> None:
        results.append(authority.timestamp(_query(b"t %d" % index, index)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 16 and all(r.granted for r in results)
    assert _rows(ctx.db) == 16


def test_a_failed_batch_stores_nothing_and_fails_every_caller(database: Database) -> None:
    ledger = TokenLedger(database)
    gate = _Gate(ledger)
    first, twin, other = _pending("AB"), _pending("AB"), _pending("CD")  # a duplicate serial
    finished = threading.Event()
    reported: list[PendingToken] = []

    def done(item: PendingToken) -> None:
        reported.append(item)
        if len(reported) == 3:
            finished.set()

    for item in (first, twin, other):
        item.on_done = done
    ledger.record_nowait(first)
    assert gate.entered.wait(30)
    ledger.record_nowait(twin)
    ledger.record_nowait(other)
    gate.release.set()
    assert finished.wait(30)
    assert first.error is None and first.done  # its own batch
    assert twin.error is not None and other.error is not None  # one transaction: both fail
    assert _rows(database) == 1


def test_a_token_that_cannot_be_recorded_is_refused_with_system_failure(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tsa, "random_serial", lambda: 0x1234567890ABCDEF1234)
    assert authority.timestamp(_query(b"one")).granted
    refused = authority.timestamp(_query(b"two"))  # the same serial: the insert fails
    assert not refused.granted
    status = TimeStampResponse.load(refused.der)["status"]
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {"system_failure"}
    assert _rows(authority.ctx.db) == 1


_KILLED = """
import os, signal, sys
from datetime import UTC, datetime
from govtrust.db import Database
from tests.unchanged import unchanged
from ca.tsa_ledger import DeferredRecords, PendingToken, TokenLedger, deferring
ledger = TokenLedger(Database(sys.argv[1]))
for i in range(25):
    ledger.record(PendingToken(f"{i + 1:X}", datetime.now(UTC), "1.2.3", "sha256", "00"))
print("recorded", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_recorded_token_survives_the_process_being_killed(database_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", _KILLED, database_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert result.stdout.strip() == "recorded"
    db = Database(database_url)
    try:
        assert _rows(db) == 25
    finally:
        db.dispose()


class _ThreadDies(BaseException):
    """Stands for what ends a thread (not an Exception the committer reports)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dying_committer_fails_its_batch_and_the_queue_and_restarts(
    database: Database,
) -> None:
    ledger = TokenLedger(database)
    entered, release = threading.Event(), threading.Event()
    original = ledger._commit
    calls: list[int] = []

    def dies_first(batch: list[PendingToken]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            entered.set()
            release.wait(30)
            for item in batch:  # what _commit does for its own batch when the thread ends
                item.error = _ThreadDies()
            raise _ThreadDies
        original(batch)

    ledger._commit = dies_first  # type: ignore[method-assign]
    first, queued = _pending("01"), _pending("02")
    reported = threading.Semaphore(0)
    for item in (first, queued):
        item.on_done = lambda _item: reported.release()
    ledger.record_nowait(first)
    assert entered.wait(30)
    ledger.record_nowait(queued)  # waits in the queue behind the dying batch
    release.set()
    assert reported.acquire(timeout=30)  # the queued one is failed, never left waiting
    assert queued.error is not None and queued.done
    ledger.record(_pending("03"))  # a new committer thread
    assert _rows(database) == 1


def test_a_lone_caller_commits_in_its_own_thread(database: Database) -> None:
    ledger = TokenLedger(database)
    ledger.record(_pending("0A"))
    assert ledger._thread is None  # no hand-over: nothing else was queued or being written
    assert _rows(database) == 1
    with unchanged(database), pytest.raises(Exception):  # noqa: B017 - a unique violation
        ledger.record(_pending("0A"))


def test_deferred_tokens_return_at_once_and_share_commits(authority: CertificateAuthority) -> None:
    """Within ``deferring`` the TSA answers without waiting for its record, and nothing is
    queued until the caller submits; ``wait`` returns once every record is committed; the
    tokens share commits; outside, it waits again."""
    ctx = authority.ctx
    gate = _Gate(ctx.tsa_ledger)
    records = DeferredRecords()
    with deferring(records):
        results = [authority.timestamp(_query(b"bulk %d" % i, i)) for i in range(30)]
    assert all(r.granted for r in results)
    assert not ctx.tsa_ledger._queue and not gate.entered.is_set()  # held back
    records.submit()
    assert gate.entered.wait(30)
    assert _rows(ctx.db) == 0  # answered, not yet recorded: the caller holds them back
    gate.release.set()
    assert records.wait() is None
    assert _rows(ctx.db) == 30 and len(gate.sizes) < 30  # shared commits
    with ctx.db.read() as session:
        stored = set(session.scalars(select(CaTsaToken.serial)))
    assert {_serial(r.der) for r in results} == stored
    assert authority.timestamp(_query(b"after", 99)).granted  # not deferred: recorded on return
    assert _rows(ctx.db) == 31


def test_the_held_tokens_of_many_callers_share_one_commit(authority: CertificateAuthority) -> None:
    """Bulk issuance holds each row's tokens in its own ``DeferredRecords``; submitted
    together, a chunk's tokens are written in one commit, and each row's ``wait`` sees its
    own recorded."""
    ctx = authority.ctx
    gate = _Gate(ctx.tsa_ledger)
    gate.release.set()
    rows = [DeferredRecords() for _ in range(6)]
    serials: list[set[str]] = []
    for n, records in enumerate(rows):
        with deferring(records):
            serials.append(
                {
                    _serial(authority.timestamp(_query(b"row %d %d" % (n, i), i)).der)
                    for i in range(5)
                }
            )
    assert _rows(ctx.db) == 0 and not gate.sizes
    submit_together(rows)
    assert all(records.wait() is None for records in rows)
    assert gate.sizes == [30]
    with ctx.db.read() as session:
        stored = set(session.scalars(select(CaTsaToken.serial)))
    assert stored == set().union(*serials)
    rows[0].submit()  # nothing left to queue: no second write
    assert gate.sizes == [30]


def test_a_deferred_token_that_cannot_be_recorded_is_reported_by_wait(
    database: Database,
) -> None:
    ledger = TokenLedger(database)
    records = DeferredRecords()
    with deferring(records):
        ledger.record(_pending("EF"))
        ledger.record(_pending("EF"))  # the same serial: the batch (or the second) fails
    assert records.wait() is not None
    assert _rows(database) <= 1
