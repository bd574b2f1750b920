"""Cost of one cluster-wide rate-limit check, side by side: the shared database
(:class:`govtrust.shared_limits.SharedRateLimiter` on PostgreSQL and on the embedded SQLite)
against Redis (the same token bucket as a Lua script, one EVALSHA round trip per check).

The redis Python package is not installed, so Redis is spoken to over a plain socket in RESP
(what any client sends for EVALSHA); the measured time is the round trip plus the script, like
the database's is the round trip plus the statement. Single caller, loopback, wall time.

Usage::

    PYTHONPATH=$PWD .venv/bin/python -m bench.limits [--checks 3000]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from govtrust.db import Database
from govtrust.shared_limits import RateLimitBucketRow, SharedRateLimiter

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = ("127.0.0.1", 6379)
TOKEN_BUCKET_LUA = """
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(b[1]) or burst
local stamp = tonumber(b[2]) or now
local elapsed = now - stamp
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local admitted = 0
if tokens >= 1 then tokens = tokens - 1; admitted = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', math.max(now, stamp))
redis.call('EXPIRE', KEYS[1], 3600)
return admitted
"""


def _per_check(limiter: SharedRateLimiter, checks: int) -> float:
    keys = [f"198.51.{i // 256 % 256}.{i % 256}" for i in range(checks)]
    limiter.take("warm-up")
    started = time.perf_counter()
    for key in keys:
        limiter.take(key)
    return (time.perf_counter() - started) / checks


def measure_database(url: str, checks: int) -> float:
    db = Database(url)
    try:
        RateLimitBucketRow.metadata.create_all(db.engine, tables=[RateLimitBucketRow.__table__])  # type: ignore[list-item]
        return _per_check(SharedRateLimiter(db, "bench", 1.0, 30), checks)
    finally:
        db.dispose()


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        data += sock.recv(4096)
    return data


def measure_redis(checks: int) -> float:
    with socket.create_connection(REDIS) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(_resp("SCRIPT", "LOAD", TOKEN_BUCKET_LUA))
        sha = _reply(sock).split(b"\r\n")[1].decode()
        prefix = f"govtrust-bench:{uuid.uuid4().hex}:"
        started = time.perf_counter()
        for i in range(checks):
            sock.sendall(_resp("EVALSHA", sha, "1", f"{prefix}{i}", "1", "30", str(time.time())))
            reply = _reply(sock)
            assert reply.startswith(b":"), reply
        elapsed = time.perf_counter() - started
        keys = [f"{prefix}{i}" for i in range(checks)]
        for start in range(0, len(keys), 500):
            sock.sendall(_resp("DEL", *keys[start : start + 500]))
            _reply(sock)
        return elapsed / checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=3000)
    args = parser.parse_args()
    name = f"gt_bench_limits_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pg = measure_database(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", args.checks)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    with tempfile.TemporaryDirectory() as tmp:
        lite = measure_database(f"sqlite:///{Path(tmp) / 'limits.db'}", args.checks)
    redis = measure_redis(args.checks)
    print(f"checks per backend: {args.checks} (distinct clients, one caller)")
    for label, seconds in (("postgresql", pg), ("sqlite", lite), ("redis (lua)", redis)):
        print(f"{label:12} {seconds * 1e6:8.0f} µs/check  {1 / seconds:8.0f} checks/s")


if __name__ == "__main__":
    main()
