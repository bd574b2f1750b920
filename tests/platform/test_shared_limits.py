"""Limits that hold cluster-wide (issue #20 item 3): two platforms — each its own engine and
connection pool, as two replicas on two hosts have — over ONE database spend from the same
buckets: the public page's rate limit (:class:`govtrust.shared_limits.SharedRateLimiter`) and
the password login lockout (``idp.oidc.passwords``, kept in ``oidc_login_throttle``) and the token
endpoint's per-client limit (``token_rate``). Both backends; the concurrent leg on PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from govtrust.db import Database
from govtrust.principal import Principal
from govtrust.shared_limits import SharedRateLimiter
from idp.oidc.passwords import LoginFailed, PasswordLogin, ThrottlePolicy
from tests.oidc.conftest import make_env
from tests.unchanged import unchanged

REGISTRAR = Principal("user", "registrar", frozenset({"identity-registrar"}))


@pytest.fixture
def two_hosts(database_url: str) -> Iterator[tuple[Database, Database]]:
    a, b = Database(database_url), Database(database_url)
    try:
        yield a, b
    finally:
        a.dispose()
        b.dispose()


def test_rate_limit_attempts_on_two_hosts_add_up(two_hosts: tuple[Database, Database]) -> None:
    now = [1_000_000.0]
    a, b = (
        SharedRateLimiter(db, "public-verify", rate=1.0, burst=4, clock=lambda: now[0])
        for db in two_hosts
    )
    # a burst of 4 across both hosts: alternating A, B, A, B spends one bucket
    assert [limiter.take("198.51.100.7") for limiter in (a, b, a, b)] == [0.0] * 4
    assert b.take("198.51.100.7") == pytest.approx(1.0)  # the 5th, on either host, waits
    assert a.take("198.51.100.7") == pytest.approx(1.0)
    assert a.take("203.0.113.9") == 0.0  # another client has its own bucket
    now[0] += 1.0  # one token refilled: one host gets it, the other still waits
    assert a.take("198.51.100.7") == 0.0
    assert b.take("198.51.100.7") > 0.0
    # a host whose clock is behind refills nothing (skew never loosens the limit)
    behind = SharedRateLimiter(two_hosts[1], "public-verify", 1.0, 4, clock=lambda: now[0] - 60)
    assert behind.take("198.51.100.7") > 0.0
    # a scope is its own bucket set
    other = SharedRateLimiter(two_hosts[1], "oidc-token", 1.0, 4, clock=lambda: now[0])
    assert other.take("198.51.100.7") == 0.0


@pytest.mark.postgresql_only
def test_concurrent_checks_on_two_hosts_admit_exactly_the_burst(
    two_hosts: tuple[Database, Database], database_url: str
) -> None:
    frozen = 2_000_000.0
    limiters = [
        SharedRateLimiter(db, "public-verify", rate=0.001, burst=10, clock=lambda: frozen)
        for db in two_hosts
    ]
    hosts = cycle(limiters)
    calls = [next(hosts) for _ in range(40)]
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda limiter: limiter.take("192.0.2.1"), calls))
    assert sum(1 for w in waits if w == 0.0) == 10


def test_login_lockout_counts_failures_from_both_hosts(
    two_hosts: tuple[Database, Database],
) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    policy = ThrottlePolicy(account_failures=4, address_failures=100, lock_seconds=600)
    a, b = (PasswordLogin(db, policy=policy, hasher=cheap) for db in two_hosts)
    a.set_password(
        REGISTRAR, identity_id="citizen-1", login_name="zhangsan", password="correct horse 1"
    )
    assert b.authenticate("zhangsan", "correct horse 1", source="198.51.100.7") == "citizen-1"
    # four wrong passwords, two per host, each from its own address: the account locks
    for index, login in enumerate((a, b, a, b)):
        with pytest.raises(LoginFailed):
            login.authenticate("zhangsan", "wrong", source=f"198.51.100.{10 + index}")
    for login in (a, b):  # locked on both hosts: even the right password fails
        # a refused login counts (throttle row) and is audited; no password or identity changes
        with (
            unchanged(login.db, allow=("oidc_login_throttle", "audit_log")),
            pytest.raises(LoginFailed),
        ):
            login.authenticate("zhangsan", "correct horse 1", source="198.51.100.99")


def test_token_endpoint_limit_is_shared_by_replicas(database_url: str, tmp_path: Path) -> None:
    """Two token endpoints (two replicas' routers, each with its own limiter) over one database:
    a client's requests on both spend one bucket; past the burst either answers 429."""
    env = make_env(database_url, tmp_path)
    try:
        env.platform.settings = dataclasses.replace(
            env.platform.settings, token_rate=0.001, token_burst=3
        )
        client_id, secret = env.register_client(grant_types=["client_credentials"], roles=[])
        replicas = [TestClient(env.app(), base_url=env.issuer) for _ in range(2)]
        form = {"grant_type": "client_credentials"}
        answers = [
            replicas[i % 2].post("/oidc/token", data=form, auth=(client_id, secret or ""))
            for i in range(5)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert answers[3].json()["error"] == "temporarily_unavailable"
        assert int(answers[3].headers["retry-after"]) >= 1
        other, other_secret = env.register_client(grant_types=["client_credentials"], roles=[])
        own = replicas[1].post("/oidc/token", data=form, auth=(other, other_secret or ""))
        assert own.status_code == 200  # another client has its own bucket
    finally:
        env.platform.keystore.close()
        env.platform.db.dispose()
