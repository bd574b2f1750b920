"""Graceful under database faults (issue #20 item 6), on a real PostgreSQL: backends killed with
``pg_terminate_backend`` are replaced without a restart; a call in flight during the fault, or
made while the server cannot be reached, maps to UNAVAILABLE (retryable), never INTERNAL; the
server ends a session left idle in a transaction, releasing its locks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import exc, text

from govtrust import audit
from govtrust.db import Database, is_connection_fault, postgresql_connect_args
from govtrust.rpc.status import classify
from tests.conftest import _pg_admin
from tests.unchanged import unchanged

pytestmark = pytest.mark.postgresql_only


def _terminate_backends(database_name: str) -> int:
    """Kill every server process of ``database_name`` (what a failover or an operator does)
    and wait until they are gone; returns how many there were."""
    with _pg_admin() as admin:
        pids = [
            row[0]
            for row in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database_name,),
            ).fetchall()
        ]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "terminated backends did not exit"
            time.sleep(0.01)
    return len(pids)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    opened = Database(database_url)
    yield opened
    opened.dispose()


def _name(db: Database) -> str:
    name = db.engine.url.database
    assert name
    return name


def _select_one(db: Database) -> int:
    with db.read() as session:
        return int(session.execute(text("SELECT 1")).scalar_one())


def test_killed_backends_are_replaced_on_the_next_call(db: Database) -> None:
    # fill the pool with several connections, then kill them all
    sessions = [db.sessionmaker() for _ in range(3)]
    for session in sessions:
        session.execute(text("SELECT 1"))
    for session in sessions:
        session.close()
    assert _terminate_backends(_name(db)) >= 3
    for _ in range(5):  # every call after the fault succeeds: no restart, no failed call
        assert _select_one(db) == 1
        with db.transaction() as session:
            session.execute(text("SELECT 1"))


def test_a_call_in_flight_during_the_fault_is_unavailable(db: Database) -> None:
    failure: list[BaseException] = []
    started = threading.Event()

    def long_call() -> None:
        try:
            with db.read() as session:
                session.execute(text("SELECT 1"))
                started.set()
                session.execute(text("SELECT pg_sleep(30)"))
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            failure.append(error)

    worker = threading.Thread(target=long_call)
    worker.start()
    assert started.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _terminate_backends(_name(db)) == 0:  # until the sleeping backend is there to kill
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.join(timeout=30)
    assert not worker.is_alive()
    (error,) = failure
    assert isinstance(error, exc.DBAPIError)
    assert is_connection_fault(error)
    mapped = classify(error, "req-1")
    assert mapped.code is grpc.StatusCode.UNAVAILABLE and mapped.http_status == 503
    assert mapped.reason == "DATABASE_UNAVAILABLE" and "retry" in mapped.message
    assert _select_one(db) == 1  # and the next call succeeds


def test_an_unreachable_server_is_unavailable_not_internal() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = Database(f"postgresql://postgres@127.0.0.1:{port}/none?connect_timeout=2")
    try:
        with pytest.raises(exc.OperationalError) as raised:
            _select_one(db)
    finally:
        db.dispose()
    assert is_connection_fault(raised.value)
    assert classify(raised.value).code is grpc.StatusCode.UNAVAILABLE


def test_a_wrong_statement_stays_internal(db: Database) -> None:
    with unchanged(db), pytest.raises(exc.ProgrammingError) as raised, db.read() as session:
        session.execute(text("SELECT * FROM no_such_table"))
    assert not is_connection_fault(raised.value)
    assert classify(raised.value, "req-2").code is grpc.StatusCode.INTERNAL


def test_sessions_carry_the_server_side_bounds(db: Database) -> None:
    with db.read() as session:
        shown = {
            name: session.execute(text(f"SHOW {name}")).scalar_one()
            for name in (
                "idle_in_transaction_session_timeout",
                "tcp_keepalives_idle",
                "tcp_keepalives_interval",
                "tcp_keepalives_count",
                "tcp_user_timeout",
            )
        }
    assert shown == {
        "idle_in_transaction_session_timeout": "1min",
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "10000",  # milliseconds
    }
    args = postgresql_connect_args(db.url)
    assert args["keepalives"] == 1 and args["keepalives_idle"] == 5
    assert args["tcp_user_timeout"] == 10_000
    # what the URL names wins; 0 turns keepalives off
    given = postgresql_connect_args(db.url + "?options=-c%20work_mem%3D8MB&connect_timeout=3")
    assert "options" not in given and "connect_timeout" not in given
    off = postgresql_connect_args(db.url, keepalive_idle_seconds=0)
    assert "keepalives" not in off and "tcp_user_timeout" not in off


def test_a_lost_client_idle_in_a_transaction_loses_its_locks(database_url: str) -> None:
    lost = Database(database_url, idle_in_transaction_seconds=1)
    other = Database(database_url)
    try:
        session = lost.sessionmaker()
        session.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # then the client goes quiet
        started = time.monotonic()
        while True:
            with other.read() as probe:
                if probe.execute(text("SELECT pg_try_advisory_xact_lock(4242)")).scalar_one():
                    break
            assert time.monotonic() - started < 30, "the idle session kept its lock"
            time.sleep(0.1)
        assert time.monotonic() - started < 10  # ended after ~1 s idle, not at TCP timeout
        with unchanged(other), pytest.raises(exc.DBAPIError) as raised:
            session.execute(text("SELECT 1"))
        assert is_connection_fault(raised.value)
        session.close()
        assert _select_one(lost) == 1  # the pool replaced it
    finally:
        lost.dispose()
        other.dispose()


def test_a_lost_holder_of_the_audit_chain_lock_loses_it_within_seconds(database_url: str) -> None:
    """Every audited write of the cluster queues behind the chain's lock: a host cut off between
    taking it and its COMMIT must not hold it for the session-wide bound (60 s) — the soak saw
    a 20 s partition stop every replica's audited writes for 27 s."""
    lost = Database(database_url)  # the session-wide bound: 60 s
    other = Database(database_url)
    try:
        session = lost.sessionmaker()
        session.begin()
        audit.lock_chain(session)  # then the client goes quiet, as a partitioned host does
        started = time.monotonic()
        with other.transaction() as waiter:  # waits for the lock like the next audited write
            waiter.execute(text("SELECT set_config('lock_timeout', '30s', true)"))
            audit.lock_chain(waiter)
            waited = time.monotonic() - started
        assert audit.CHAIN_LOCK_IDLE_SECONDS - 1 <= waited < audit.CHAIN_LOCK_IDLE_SECONDS + 5
        with unchanged(other), pytest.raises(exc.DBAPIError) as raised:
            session.execute(text("SELECT 1"))
        assert is_connection_fault(raised.value)  # the holder's call fails retryably
        session.close()
        # the tight bound was the transaction's own: the next one has the session's again
        with other.transaction() as tx:
            audit.lock_chain(tx)
        with other.read() as probe:
            bound = probe.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
        assert bound == "1min"
    finally:
        lost.dispose()
        other.dispose()


def test_a_database_fault_while_checking_a_bearer_token_is_no_bad_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gRPC bearer-token resolver reads the database: when it cannot be reached, the call
    fails with that connection fault (UNAVAILABLE, retryable), not UNAUTHENTICATED (a client
    would drop a good token); any other failure still reads as a bad token."""
    from sqlalchemy import exc

    from govtrust.api import oidc_grpc
    from govtrust.errors import Unauthenticated

    class Provider:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def principal_for_token(self, token: str) -> object:
            raise self.error

    gone = exc.DisconnectionError("the database went away")
    monkeypatch.setattr(oidc_grpc, "provider_for", lambda platform: Provider(gone))
    with pytest.raises(exc.DisconnectionError):
        oidc_grpc.token_resolver(object(), "token")  # type: ignore[arg-type]
    monkeypatch.setattr(oidc_grpc, "provider_for", lambda platform: Provider(ValueError("bad")))
    with pytest.raises(Unauthenticated):
        oidc_grpc.token_resolver(object(), "token")  # type: ignore[arg-type]


def test_driver_errors_unwrapped_by_sqlalchemy_are_classified_too() -> None:
    """Code on a raw DBAPI cursor (govtrust.fastsql: token checks, refreshes) sees the driver's
    own exceptions: a lost or refused PostgreSQL connection and a locked SQLite database are
    connection faults (UNAVAILABLE), a wrong statement is not."""
    import sqlite3

    import psycopg
    from psycopg import errors

    assert is_connection_fault(psycopg.OperationalError("server closed the connection"))
    assert is_connection_fault(errors.AdminShutdown("terminating connection"))
    assert is_connection_fault(errors.CannotConnectNow("the database system is starting up"))
    assert is_connection_fault(psycopg.InterfaceError("the connection is closed"))
    assert not is_connection_fault(errors.UndefinedTable("no such table"))
    assert not is_connection_fault(errors.UniqueViolation("duplicate key"))
    assert is_connection_fault(sqlite3.OperationalError("database is locked"))
    assert not is_connection_fault(sqlite3.OperationalError("no such table: x"))
    assert not is_connection_fault(ValueError("not a database error"))
