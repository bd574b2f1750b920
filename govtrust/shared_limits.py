"""Rate limits that hold across every process and host of a deployment: token buckets kept in the
database (table ``rate_limit_buckets``, owned here), not in a process.

A cluster of N replicas with per-process buckets lets a client have N times the configured rate
(and more with ``--workers``). Here each check is ONE statement on the shared database — an
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` that refills the bucket for the time elapsed,
spends a token when there is one and says whether it did — so concurrent checks on different
hosts serialise on the bucket's row and add up exactly. The same statement runs on PostgreSQL
and on the embedded SQLite (3.35+). Why the database and not Redis: docs/scaling.md "Cluster-wide
limits" (the measured cost per check, and no second store to run).

On PostgreSQL the check's transaction commits with ``synchronous_commit = off`` (for itself
only): a bucket is not worth a disk flush, and a crash can only forget the last few hundred
milliseconds of spending (clients get that much more, once).

Time is the wall clock (``time.time``) of the checking host, because hosts share no monotonic
clock; an elapsed time that comes out negative (a host whose clock is behind) counts as zero,
so skew can only make a limit stricter, never looser.

Buckets are rows per (scope, client); :meth:`SharedRateLimiter.forget_idle` deletes those idle
long enough to have refilled (a full bucket and a missing one behave the same).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy import Boolean, Float, String, delete, text
from sqlalchemy.orm import Mapped, mapped_column

from govtrust.db import Base, Database


class RateLimitBucketRow(Base):
    """One client's token bucket in one scope (``public-verify``, ``oidc-token`` ...)."""

    __tablename__ = "rate_limit_buckets"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    stamp: Mapped[float] = mapped_column(Float)  # wall-clock seconds of the last check
    admitted: Mapped[bool] = mapped_column(Boolean)  # whether the last check spent a token


# The refilled level, capped at the burst; elapsed time below zero (clock skew) counts as zero.
_REFILLED = (
    "CASE WHEN rate_limit_buckets.tokens + :rate * "
    "(CASE WHEN :now > rate_limit_buckets.stamp THEN :now - rate_limit_buckets.stamp ELSE 0 END)"
    " > :burst THEN :burst ELSE rate_limit_buckets.tokens + :rate * "
    "(CASE WHEN :now > rate_limit_buckets.stamp THEN :now - rate_limit_buckets.stamp ELSE 0 END)"
    " END"
)
_TAKE_SQL = text(
    "INSERT INTO rate_limit_buckets (scope, client, tokens, stamp, admitted) "  # noqa: S608 - constant text
    "VALUES (:scope, :client, :burst - 1, :now, true) "
    "ON CONFLICT (scope, client) DO UPDATE SET "
    f"tokens = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END, "
    f"admitted = ({_REFILLED} >= 1), "
    "stamp = CASE WHEN :now > rate_limit_buckets.stamp THEN :now "
    "ELSE rate_limit_buckets.stamp END "
    "RETURNING tokens, admitted"
)

_NO_FLUSH_WAIT_SQL = text("SET LOCAL synchronous_commit = off")


class SharedRateLimiter:
    """Token buckets per client in the shared database: ``burst`` requests at once, refilled at
    ``rate`` per second, the same bucket for every process and host of the deployment.

    The interface of :class:`govtrust.http.ratelimit.RateLimiter` (``take``); ``take`` does one
    database round trip, so async callers run it off the event loop."""

    def __init__(
        self,
        db: Database,
        scope: str,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.db = db
        self.scope = scope
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._postgres = db.engine.dialect.name == "postgresql"

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when allowed, else seconds until one is due."""
        with self.db.transaction() as session:
            if self._postgres:  # a bucket need not survive a crash: skip the WAL flush wait
                session.execute(_NO_FLUSH_WAIT_SQL)
            tokens, admitted = session.execute(
                _TAKE_SQL,
                {
                    "scope": self.scope,
                    "client": key[:200],
                    "rate": self.rate,
                    "burst": float(self.burst),
                    "now": self._clock(),
                },
            ).one()
        return 0.0 if admitted else (1.0 - float(tokens)) / self.rate

    def forget_idle(self, idle_seconds: float | None = None) -> int:
        """Delete the buckets of this scope unchecked for ``idle_seconds`` (default: long enough
        to have refilled completely); how many."""
        idle = idle_seconds if idle_seconds is not None else self.burst / self.rate
        with self.db.transaction() as session:
            result = session.execute(
                delete(RateLimitBucketRow).where(
                    RateLimitBucketRow.scope == self.scope,
                    RateLimitBucketRow.stamp < self._clock() - idle,
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)
