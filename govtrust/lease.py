"""Cluster jobs: periodic work that must run once per cluster, under a lease with a fencing token.

Every replica runs the same schedule (:class:`ClusterJobs`), but a job's round runs only in the
replica holding that job's lease: a row of ``cluster_leases`` (job, holder, token, expiry). A
replica takes the lease when it is free or expired, which increments its **fencing token**; the
holder renews it on every tick, and releases it when it stops. The lease's clock is the
database's (``clock_timestamp()`` on PostgreSQL), so the hosts' clocks never disagree about it.

* **Once per period.** Time is cut into periods of the job's interval (database clock); a round
  claims its period in ``cluster_job_runs`` (primary key job + period) before it runs and marks
  it done after, so a period is done exactly once, whoever holds the lease. A claim left by a
  holder that died (an older token, not done) is taken over by the next holder.
* **Takeover bound.** A dead holder's lease expires at most ``ttl`` after its last renewal and
  the others try every ``tick`` (at most ``ttl / 3``): another replica runs the job within
  ``ttl + tick`` of the death (40 s with the default 30 s lease), at once after a clean stop.
* **Fencing.** A job receives a :class:`Fence` and checks it in the *same transaction* as each
  write it makes (``fence.check(session)``): the check locks the lease row (``SELECT … FOR
  UPDATE``) and refuses with :class:`StaleFence` when the token moved, i.e. another replica took
  the job over. Taking a lease needs that same row lock, so a stale holder's write either
  commits before the new token exists or is refused — a leader paused past its lease (GC, a
  partitioned host) never writes over its successor.

On SQLite (the embedded single host) the same code runs: write transactions are serialised
(``BEGIN IMMEDIATE``), which stands in for the row lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from sqlalchemy import BigInteger, DateTime, Integer, String, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from govtrust.db import Base, Database, as_utc, process_id
from govtrust.errors import FailedPrecondition

log = logging.getLogger("govtrust.lease")

DEFAULT_LEASE_SECONDS = 30
_NOBODY = ""
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class ClusterLease(Base):
    """One job's lease: who holds it, until when, and its fencing token (only ever grows)."""

    __tablename__ = "cluster_leases"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClusterJobRun(Base):
    """One period of one job: who ran it under which token, and whether it is done."""

    __tablename__ = "cluster_job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # running | failed | done
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StaleFence(FailedPrecondition):
    """A write under a lease token that is no longer current: another replica took the job over
    (the lease expired while this one worked). The write is rolled back."""

    reason = "STALE_LEASE"


@dataclass(frozen=True)
class Lease:
    """A lease held: the job, this replica's holder id, the fencing token and the expiry."""

    job: str
    holder: str
    token: int
    expires_at: datetime

    @property
    def fence(self) -> Fence:
        """The fence the job's writes check (see :class:`Fence`)."""
        return Fence(self.job, self.token, self.holder)


@dataclass(frozen=True)
class Fence:
    """What a cluster job's writes carry: the lease's job and token at the round's start.

    Domain code takes a ``Fence | None`` and calls :meth:`check` inside the write transaction
    it fences; it needs nothing else of the lease (nor of the server that schedules it).
    """

    job: str
    token: int
    holder: str = ""

    def check(self, session: Session) -> None:
        """Lock the job's lease row until this transaction ends and refuse
        (:class:`StaleFence`) unless it still carries this token."""
        current = session.execute(
            select(ClusterLease.token, ClusterLease.holder)
            .where(ClusterLease.job == self.job)
            .with_for_update()
        ).first()
        if current is None or int(current[0]) != self.token:
            now_token = "none" if current is None else str(current[0])
            raise StaleFence(
                f"cluster job {self.job}: lease token {self.token} is stale (now {now_token}, "
                f"held by {current[1] if current else 'nobody'}); the write is refused"
            )


def database_now(session: Session) -> datetime:
    """The database's clock (PostgreSQL ``clock_timestamp()``), the one clock every replica of
    a cluster shares; this host's clock on SQLite (one host)."""
    if session.get_bind().dialect.name == "postgresql":
        return as_utc(session.execute(select(func.clock_timestamp())).scalar_one())
    return datetime.now(UTC)


def new_holder_id() -> str:
    """A holder id naming this process: host, pid and a random suffix (a restarted process with
    a recycled pid is a new holder)."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{secrets.token_hex(4)}"


def _lock_row(session: Session, job: str) -> ClusterLease:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(ClusterLease)
        .values(job=job, holder=_NOBODY, token=0, expires_at=_NEVER, acquired_at=_NEVER)
        .on_conflict_do_nothing(index_elements=["job"])
    )
    return session.execute(
        select(ClusterLease)
        .where(ClusterLease.job == job)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def acquire(db: Database, job: str, holder: str, ttl_seconds: float) -> Lease | None:
    """Take or renew ``job``'s lease for ``holder`` for ``ttl_seconds``; None while another
    holder's lease is unexpired. Taking it (not renewing) increments the fencing token."""
    with db.transaction() as session:
        now = database_now(session)
        row = _lock_row(session, job)
        expires = now + timedelta(seconds=ttl_seconds)
        live = as_utc(row.expires_at) > now
        if live and row.holder != holder:
            return None
        if not live:  # free, expired, or our own lapsed lease: a new token
            row.token += 1
            row.holder = holder
            row.acquired_at = now
        row.expires_at = expires
        return Lease(job, holder, int(row.token), expires)


def release(db: Database, lease: Lease) -> None:
    """Give the lease up now (a clean stop), so another replica takes over at its next tick;
    nothing when it has already passed to another holder."""
    with db.transaction() as session:
        now = database_now(session)
        session.execute(
            update(ClusterLease)
            .where(ClusterLease.job == lease.job, ClusterLease.token == lease.token)
            .values(expires_at=now)
        )


def current_lease(db: Database, job: str) -> Lease | None:
    """The job's lease row as stored (expired or not), None if never taken."""
    with db.read() as session:
        row = session.get(ClusterLease, job)
        if row is None or row.token == 0:
            return None
        return Lease(row.job, row.holder, int(row.token), as_utc(row.expires_at))


def claim_period(db: Database, fence: Fence, interval_seconds: float) -> int | None:
    """Claim the current period of ``fence.job`` for this round; returns the period, or None
    when it is done or another live claim holds it. A claim left by an older token (a holder
    that died mid-round) or a failed round is taken over."""
    with db.transaction() as session:
        fence.check(session)
        now = database_now(session)
        period = int(now.timestamp() // interval_seconds)
        run = session.get(ClusterJobRun, (fence.job, period))
        if run is None:
            session.add(
                ClusterJobRun(
                    job=fence.job,
                    period=period,
                    holder=fence.holder,
                    token=fence.token,
                    attempts=1,
                    outcome="running",
                    started_at=now,
                    finished_at=None,
                )
            )
            return period
        if run.outcome == "done" or (run.token >= fence.token and run.outcome == "running"):
            return None
        run.holder, run.token, run.outcome, run.started_at = (
            fence.holder,
            fence.token,
            "running",
            now,
        )
        run.attempts += 1
        return period


def finish_period(db: Database, fence: Fence, period: int, *, done: bool) -> None:
    """Mark a claimed period done (or failed, to be tried again), under the fence."""
    with db.transaction() as session:
        fence.check(session)
        run = session.get(ClusterJobRun, (fence.job, period))
        if run is None or run.token != fence.token:
            raise StaleFence(f"cluster job {fence.job}: period {period} was taken over")
        run.outcome = "done" if done else "failed"
        run.finished_at = database_now(session) if done else None


def job_runs(db: Database, job: str | None = None) -> list[ClusterJobRun]:
    """The recorded periods (of one job, or all), oldest first: what an operator or a test reads
    to see that each period ran once, and by whom."""
    with db.read() as session:
        query = select(ClusterJobRun).order_by(ClusterJobRun.job, ClusterJobRun.period)
        if job is not None:
            query = query.where(ClusterJobRun.job == job)
        return list(session.scalars(query))


# --- the schedule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterJob:
    """A periodic cluster job: its name (the lease's), its period and its round, which gets the
    round's :class:`Fence` and must check it in each write transaction."""

    name: str
    interval_seconds: float
    run: Callable[[Fence], object]


class Round(Enum):
    """What one tick of a job did in this replica."""

    NOT_LEADER = "not-leader"  # another replica holds the lease
    ALREADY_RAN = "already-ran"  # this period is done (or being done)
    RAN = "ran"
    FAILED = "failed"
    FENCED = "fenced"  # the lease passed to another replica during the round


Offload = Callable[[Callable[[], object]], Awaitable[object]]


class ClusterJobs:
    """One replica's side of the cluster jobs: each job ticks every ``min(interval, ttl/3)``,
    taking or renewing its lease and running the current period if it is not done."""

    def __init__(
        self,
        db: Database,
        jobs: Sequence[ClusterJob],
        *,
        ttl_seconds: float = DEFAULT_LEASE_SECONDS,
        holder: str | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("a lease needs a positive time to live")
        self.db = db
        self.jobs = tuple(jobs)
        self.ttl_seconds = ttl_seconds
        self.holder = holder or new_holder_id()
        self._held: dict[str, Lease] = {}

    def tick_seconds(self, job: ClusterJob) -> float:
        """How often this replica looks at ``job``: a third of the lease (renewals well inside
        it), or half the job's interval when that is shorter (no period is skipped)."""
        return min(job.interval_seconds / 2, self.ttl_seconds / 3)

    @property
    def takeover_bound_seconds(self) -> float:
        """Longest time from a holder's death to another replica holding the lease."""
        return self.ttl_seconds + self.ttl_seconds / 3

    def tick(self, job: ClusterJob) -> Round:
        """One look at ``job``: take or renew its lease; if held and the period is not done,
        run it (synchronously) and record it."""
        lease = acquire(self.db, job.name, self.holder, self.ttl_seconds)
        if lease is None:
            self._held.pop(job.name, None)
            return Round.NOT_LEADER
        self._held[job.name] = lease
        return self._run_round(job, lease.fence)

    def _run_round(self, job: ClusterJob, fence: Fence) -> Round:
        try:
            period = claim_period(self.db, fence, job.interval_seconds)
        except StaleFence:
            return Round.FENCED
        if period is None:
            return Round.ALREADY_RAN
        try:
            job.run(fence)
        except StaleFence:
            log.warning(
                "cluster job %s: lease lost during the round; its writes were refused", job.name
            )
            return Round.FENCED
        except Exception:  # a failed round is logged; the next tick tries the period again
            log.exception("cluster job %s failed", job.name)
            try:
                finish_period(self.db, fence, period, done=False)
            except StaleFence:
                return Round.FENCED
            return Round.FAILED
        try:
            finish_period(self.db, fence, period, done=True)
        except StaleFence:
            return Round.FENCED
        return Round.RAN

    def release_all(self) -> None:
        """Release every lease this replica holds (a clean stop: others take over at once)."""
        for lease in list(self._held.values()):
            try:
                release(self.db, lease)
            except Exception:  # noqa: BLE001 - the lease then simply expires
                log.warning("cluster job %s: could not release the lease", lease.job)
        self._held.clear()

    async def serve(self, stop: asyncio.Event, offload: Offload) -> None:
        """Tick every job until ``stop``, each tick's database work run by ``offload`` (off the
        event loop); then release the leases held."""
        try:
            await asyncio.gather(*(self._loop(job, stop, offload) for job in self.jobs))
        finally:
            await offload(self.release_all)

    async def _loop(self, job: ClusterJob, stop: asyncio.Event, offload: Offload) -> None:
        tick = self.tick_seconds(job)
        while not stop.is_set():
            try:
                await self._tick_renewing(job, offload)
            except Exception:
                log.exception("cluster job %s: tick failed", job.name)
            try:
                await asyncio.wait_for(stop.wait(), timeout=tick)
            except TimeoutError:
                continue

    async def _tick_renewing(self, job: ClusterJob, offload: Offload) -> None:
        """:meth:`tick`, renewing the lease every ``tick`` while a long round runs (a CRL of
        millions of entries can outlast the lease)."""
        round_task = asyncio.ensure_future(offload(lambda: self.tick(job)))
        tick = self.tick_seconds(job)
        while True:
            done, _ = await asyncio.wait({round_task}, timeout=tick)
            if done:
                round_task.result()
                return
            if job.name in self._held:
                await offload(lambda: acquire(self.db, job.name, self.holder, self.ttl_seconds))


# --- members: which processes are alive ---------------------------------------------------------
#
# A call that claims work for the length of the call (an idempotency key: IssueLicense's
# ``licence_issue_requests``) records the claiming *process* as its holder. Every serving process
# is a member of the cluster: a row of ``cluster_members`` it renews every ``ttl / 4`` seconds
# (database clock). A process killed with SIGKILL, or cut off, stops renewing, and once its row
# has expired its claims are known to be abandoned: a retry elsewhere takes them over at once,
# instead of after an age bound of minutes. Taking over replaces the claim's token, and the
# claimant's completing write checks that token under the claim row's lock, so a holder that was
# only slow (paused, partitioned) cannot land its late write after the takeover.

DEFAULT_MEMBER_SECONDS = 4.0
"""A member's row lives this long after its last renewal: the bound, after a process dies, for
its claims to be taken over (plus one retry)."""

_this_member = ""


class ClusterMember(Base):
    """A live serving process: its holder id and until when it is presumed alive."""

    __tablename__ = "cluster_members"

    holder: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def this_member() -> str:
    """This process's member id once its membership is renewed (:class:`Membership`), else ""
    (a process that is no member: a command, a test; its claims are taken over by age only)."""
    return _this_member


def member_gone(session: Session, holder: str) -> bool:
    """Whether the member ``holder`` is known to be gone: it was a member (non-empty id) and its
    row expired (database clock) or was removed (a clean stop, or pruned long after expiry).
    False for "" (no member: only an age bound can tell)."""
    if not holder:
        return False
    expires = session.execute(
        select(ClusterMember.expires_at).where(ClusterMember.holder == holder)
    ).scalar_one_or_none()
    return expires is None or as_utc(expires) <= database_now(session)


def member_has_sessions(session: Session, holder: str) -> bool:
    """Whether a PostgreSQL session of the member ``holder`` is still open (its
    ``application_name``, :func:`govtrust.db.process_id`): a transaction of a process cut off
    from the database (a partition) may still commit while one is. Always False on SQLite (one
    host: no session outlives its process)."""
    if not holder or session.get_bind().dialect.name != "postgresql":
        return False
    found = session.execute(
        text("SELECT 1 FROM pg_stat_activity WHERE application_name = :holder LIMIT 1"),
        {"holder": holder},
    ).first()
    return found is not None


class Membership:
    """This process's row of ``cluster_members``, renewed until it stops (then removed)."""

    PRUNE_AFTER = timedelta(hours=1)

    def __init__(
        self,
        db: Database,
        *,
        ttl_seconds: float = DEFAULT_MEMBER_SECONDS,
        holder: str | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("a membership needs a positive time to live")
        self.db = db
        self.ttl_seconds = ttl_seconds
        self.holder = holder or process_id()

    def renew(self) -> datetime:
        """Insert or extend this process's row; prune rows expired long ago; the new expiry.
        Makes this process's id :func:`this_member` (claims record it from now on)."""
        global _this_member
        with self.db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SET LOCAL synchronous_commit = off"))
            now = database_now(session)
            expires = now + timedelta(seconds=self.ttl_seconds)
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement = insert(ClusterMember).values(
                holder=self.holder, started_at=now, expires_at=expires
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["holder"], set_={"expires_at": statement.excluded.expires_at}
                )
            )
            session.execute(
                delete(ClusterMember).where(ClusterMember.expires_at < now - self.PRUNE_AFTER)
            )
        _this_member = self.holder
        return expires

    def leave(self) -> None:
        """Remove this process's row (a clean stop: its claims are free to take over at once;
        a drained process holds none)."""
        global _this_member
        if _this_member == self.holder:
            _this_member = ""
        with self.db.transaction() as session:
            session.execute(delete(ClusterMember).where(ClusterMember.holder == self.holder))

    async def serve(self, stop: asyncio.Event, offload: Offload) -> None:
        """Renew every ``ttl / 4`` until ``stop``, then leave."""
        every = self.ttl_seconds / 4
        try:
            while not stop.is_set():
                try:
                    await offload(self.renew)
                except Exception:  # noqa: BLE001 - the database is away: retried next time
                    log.warning("cluster membership of %s: renewal failed", self.holder)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=every)
                except TimeoutError:
                    continue
        finally:
            try:
                await offload(self.leave)
            except Exception:  # noqa: BLE001 - the row then simply expires
                log.warning("cluster membership of %s: could not leave", self.holder)
