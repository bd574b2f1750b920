"""Cluster jobs (issue #20 item 1): one holder per job lease, a fencing token that refuses a
stale leader's writes in the writing transaction, each period run once across replicas, and
takeover within the stated bound when the holder is killed (a real process, SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ca.authority import authority_for
from ca.models import CaCrl
from govtrust.audit import AuditCheckpoint
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.lease import (
    ClusterJob,
    ClusterJobs,
    Fence,
    Lease,
    Round,
    StaleFence,
    acquire,
    claim_period,
    current_lease,
    job_runs,
    release,
)
from govtrust.platform import Platform
from govtrust.server.wiring import CA_REFRESH_JOB, checkpoint_audit, open_wired
from tests.unchanged import unchanged

ROOT = Path(__file__).resolve().parents[2]
# serial: leases of 0.5-3 s must be renewed, and taken over, on time (bounds of +1 s)
pytestmark = pytest.mark.serial


def _take_over(db: Database, job: str, holder: str, ttl: float, within: float) -> Lease:
    """Poll ``acquire`` for ``holder`` until it gets the lease, failing after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        lease = acquire(db, job, holder, ttl)
        if lease is not None:
            return lease
        assert time.monotonic() < deadline, f"{holder} did not get {job} within {within} s"
        time.sleep(0.05)


def test_one_holder_at_a_time_and_each_acquisition_raises_the_token(database: Database) -> None:
    first = acquire(database, "job", "A", 30)
    assert first is not None and first.token == 1
    assert acquire(database, "job", "B", 30) is None  # A holds it
    renewed = acquire(database, "job", "A", 30)
    assert renewed is not None and renewed.token == 1  # a renewal keeps the token
    assert renewed.expires_at >= first.expires_at
    release(database, first)
    taken = acquire(database, "job", "B", 30)
    assert taken is not None and taken.token == 2 and taken.holder == "B"
    stored = current_lease(database, "job")
    assert stored is not None and (stored.holder, stored.token) == ("B", 2)
    release(database, first)  # A's release of a lease it no longer holds changes nothing
    assert acquire(database, "job", "A", 30) is None
    assert acquire(database, "other", "A", 30) is not None  # leases are per job


def test_an_expired_lease_passes_on_and_the_stale_token_is_refused(database: Database) -> None:
    ttl = 0.5
    old = acquire(database, "job", "A", ttl)
    assert old is not None
    started = time.monotonic()
    new = _take_over(database, "job", "B", ttl, within=10)
    assert time.monotonic() - started <= ttl + 1.0
    assert new.token == old.token + 1
    with unchanged(database, schedule=True):
        with pytest.raises(StaleFence, match="stale"), database.transaction() as session:
            old.fence.check(session)
        with pytest.raises(StaleFence):
            claim_period(database, old.fence, 60)
    with database.transaction() as session:
        new.fence.check(session)  # the current holder's writes pass
    assert claim_period(database, new.fence, 60) is not None
    assert claim_period(database, new.fence, 60) is None  # claimed: not twice


def test_nothing_changed_lets_the_schedule_renew_and_start_periods_but_not_hand_over(
    database: Database,
) -> None:
    """A running server renews its leases and starts new periods on its own clock while a
    refusal test's block runs: ``unchanged`` leaves those out (unless ``schedule=True``), but a
    lease changing holder is still a change."""
    lease = acquire(database, "job", "A", 30)
    assert lease is not None
    with unchanged(database):
        assert acquire(database, "job", "A", 60) is not None  # a renewal moves only the expiry
        assert claim_period(database, lease.fence, 60) is not None
    with (
        pytest.raises(AssertionError, match="table 'cluster_leases' changed"),
        unchanged(database, schedule=True),
    ):
        acquire(database, "job", "A", 90)
    with (
        pytest.raises(AssertionError, match="table 'cluster_job_runs' changed"),
        unchanged(database, schedule=True),
    ):
        claim_period(database, lease.fence, 1)
    release(database, lease)
    with (
        pytest.raises(AssertionError, match="table 'cluster_leases' changed"),
        unchanged(database),
    ):
        assert acquire(database, "job", "B", 30) is not None  # handed over: token, holder


def test_a_job_that_failed_is_tried_again_in_its_period(database: Database) -> None:
    calls: list[int] = []

    def flaky(fence: Fence) -> None:
        calls.append(fence.token)
        if len(calls) == 1:
            raise RuntimeError("a transient fault")

    jobs = ClusterJobs(database, [ClusterJob("flaky", 3600, flaky)], holder="A")
    assert jobs.tick(jobs.jobs[0]) is Round.FAILED
    assert jobs.tick(jobs.jobs[0]) is Round.RAN
    assert jobs.tick(jobs.jobs[0]) is Round.ALREADY_RAN
    (run,) = job_runs(database, "flaky")
    assert (run.outcome, run.attempts, run.holder) == ("done", 2, "A")
    other = ClusterJobs(database, [ClusterJob("flaky", 3600, flaky)], holder="B")
    assert other.tick(other.jobs[0]) is Round.NOT_LEADER
    assert len(calls) == 2


# --- several replicas on one PostgreSQL database ------------------------------------------------


@pytest.mark.postgresql_only
def test_two_replicas_run_each_period_exactly_once(database_url: str) -> None:
    replicas = [Database(database_url), Database(database_url)]
    ran: list[tuple[str, int]] = []

    def job(fence: Fence) -> None:
        ran.append((fence.holder, fence.token))

    schedules = [
        ClusterJobs(db, [ClusterJob("count", 1.0, job)], ttl_seconds=3, holder=name)
        for db, name in zip(replicas, ("A", "B"), strict=True)
    ]

    def done_periods() -> int:
        return sum(1 for r in job_runs(replicas[0], "count") if r.outcome == "done")

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.serve(stop, asyncio.to_thread)) for s in schedules]
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(done_periods) < 4:
            assert time.monotonic() < deadline, "the job did not run four periods"
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)

    try:
        asyncio.run(scenario())
        runs = job_runs(replicas[0], "count")
        done = [r for r in runs if r.outcome == "done"]
        assert len(ran) == len(done)  # every round recorded, none twice
        periods = [r.period for r in runs]
        assert len(periods) == len(set(periods))
        assert periods == list(range(periods[0], periods[0] + len(periods)))  # none skipped
        assert {(r.holder, r.token) for r in done} == set(ran)
        assert len(set(ran)) == 1  # the holder kept its lease throughout: one replica ran all
        assert all(r.attempts == 1 for r in done)
        lease = current_lease(replicas[0], "count")
        assert lease is not None  # released at the stop: expired now
        assert acquire(replicas[1], "count", "C", 30) is not None
    finally:
        for db in replicas:
            db.dispose()


@pytest.fixture
def killable_holder(database_url: str) -> Iterator[Callable[[str, float], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(job: str, ttl: float) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.platform.lease_holder", database_url, job, str(ttl)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.postgresql_only
def test_a_killed_holder_is_replaced_within_the_bound(
    database_url: str, killable_holder: Callable[[str, float], subprocess.Popen[str]]
) -> None:
    ttl = 2.0
    holder = killable_holder("sweep", ttl)
    assert holder.stdout is not None
    line = holder.stdout.readline()  # blocks until its round started (or it died)
    assert line.startswith("running "), line
    dead_token = int(line.split()[1])
    db = Database(database_url)
    ran: list[Fence] = []
    survivor = ClusterJobs(db, [ClusterJob("sweep", 3600.0, ran.append)], ttl_seconds=ttl)
    try:
        # alive, it keeps renewing: the other replica waits past a whole lease and gets nothing
        deadline = time.monotonic() + ttl * 1.5
        while time.monotonic() < deadline:
            assert survivor.tick(survivor.jobs[0]) is Round.NOT_LEADER
            time.sleep(0.2)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        killed_at = time.monotonic()
        while (outcome := survivor.tick(survivor.jobs[0])) is not Round.RAN:
            assert outcome is Round.NOT_LEADER
            assert time.monotonic() - killed_at < survivor.takeover_bound_seconds + 1.0
            time.sleep(0.1)
        took = time.monotonic() - killed_at
        assert took <= survivor.takeover_bound_seconds + 1.0
        # the dead holder's unfinished period was taken over, not run a second time later
        (run,) = job_runs(db, "sweep")
        assert (run.outcome, run.attempts, run.holder) == ("done", 2, survivor.holder)
        assert ran[0].token == run.token == dead_token + 1
        assert survivor.tick(survivor.jobs[0]) is Round.ALREADY_RAN
    finally:
        db.dispose()


@pytest.fixture
def two_platforms(database_url: str, tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    """Two replicas (own engines, caches and components) of one instance on one database."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    first = open_wired(settings)
    second = open_wired(settings)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _count(db: Database, model: type[CaCrl] | type[AuditCheckpoint]) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.postgresql_only
def test_a_stale_leaders_crl_and_checkpoint_are_refused(
    two_platforms: tuple[Platform, Platform],
) -> None:
    a, b = two_platforms
    authority_for(a)  # bootstrap the CA (and its audit records) before any lease
    authority_for(b)
    ttl = 0.5
    stale = acquire(a.db, CA_REFRESH_JOB, "A", ttl)
    assert stale is not None
    current = _take_over(b.db, CA_REFRESH_JOB, "B", ttl, within=10)  # A paused past its lease
    crls, checkpoints = _count(a.db, CaCrl), _count(a.db, AuditCheckpoint)
    with unchanged(a.db, a.keystore, schedule=True):
        with pytest.raises(StaleFence):
            authority_for(a).refresh(stale.fence)
        with pytest.raises(StaleFence):
            checkpoint_audit(a, stale.fence)
    assert (_count(a.db, CaCrl), _count(a.db, AuditCheckpoint)) == (crls, checkpoints)
    numbers = authority_for(b).refresh(current.fence)  # the current leader publishes
    assert numbers["crl:root"] > 0 and numbers["delta-crl:root"] > 0
    assert _count(a.db, CaCrl) > crls
    assert checkpoint_audit(b, current.fence) is not None
    assert _count(a.db, AuditCheckpoint) == checkpoints + 1
