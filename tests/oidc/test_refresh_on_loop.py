"""A refresh made on the event loop (SQLite) never waits there for the write lock.

``Provider.token(..., wait=False)`` raises ``WriteWouldBlock`` before writing anything when
SQLite's write lock is held by a writer outside the token gate; ``resume()`` then finishes the
same refresh, waiting.
Refused tokens that are not a reuse are only read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from govtrust.audit import AuditRecord
from govtrust.db import SQLITE_BUSY_TIMEOUT_MS
from idp.oidc.errors import OAuthError
from idp.oidc.grants import WriteWouldBlock
from tests.oidc.conftest import OidcEnv
from tests.oidc.flows import full_login
from tests.unchanged import unchanged


@pytest.fixture
def refresh(sqlite_env: OidcEnv) -> tuple[OidcEnv, dict[str, str], tuple[str, str]]:
    client_id, secret = sqlite_env.register_client()
    assert secret is not None
    with sqlite_env.http() as http:
        token = full_login(http, client_id, secret)["refresh_token"]
    return sqlite_env, {"grant_type": "refresh_token", "refresh_token": token}, (client_id, secret)


def _audit_count(env: OidcEnv) -> int:
    with env.platform.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


def test_sqlite_write_lock_held_elsewhere_defers_without_waiting(
    refresh: tuple[OidcEnv, dict[str, str], tuple[str, str]],
) -> None:
    env, form, basic = refresh
    database = env.platform.db.engine.url.database
    assert database
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer that does not use the gate
        with unchanged(env.platform.db), pytest.raises(WriteWouldBlock) as deferred:
            env.provider.token(form, basic, wait=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert deferred.value.resume()["refresh_token"]
    # The connection went back to the pool with its normal busy timeout.
    connections = [env.platform.db.engine.raw_connection() for _ in range(3)]
    try:
        for connection in connections:
            timeout = connection.cursor().execute("PRAGMA busy_timeout").fetchone()[0]
            assert timeout == SQLITE_BUSY_TIMEOUT_MS
    finally:
        for connection in connections:
            connection.close()


def test_unknown_and_expired_tokens_write_nothing(
    refresh: tuple[OidcEnv, dict[str, str], tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, form, basic = refresh
    before = _audit_count(env)

    def no_write(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a refused, never-used token caused a write transaction")

    monkeypatch.setattr(env.platform.db, "transaction", no_write)
    for bad in ("not-a-token", "x" * 43):
        with unchanged(env.platform.db), pytest.raises(OAuthError, match="invalid_grant"):
            env.provider.token({**form, "refresh_token": bad}, basic, wait=False)
    monkeypatch.undo()
    # A real reuse still revokes the family (one write; no reuse interval to answer it).
    env.provider.config = replace(env.provider.config, refresh_reuse_interval=0)
    assert env.provider.token(form, basic, wait=False)["refresh_token"]
    with pytest.raises(OAuthError, match="invalid_grant"):
        env.provider.token(form, basic, wait=False)
    assert _audit_count(env) > before
