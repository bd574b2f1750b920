"""Database engine, sessions and the declarative base shared by every package.

SQLite (WAL, foreign keys on, busy timeout) is the embedded default; PostgreSQL through
psycopg 3 for production. Domain code is synchronous; network adapters offload it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import select
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import MetaData, create_engine, event, exc, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every table of every package (one metadata, one migration history)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime: SQLite hands back naive values for aware columns."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sqlite_url(data_dir: Path) -> str:
    """The embedded database URL for a data directory."""
    return f"sqlite:///{(data_dir / 'govtrust.db').resolve()}"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def describe_database(url: str) -> str:
    """Kind and location of the database, without the password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite {parsed.database}"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
    return f"PostgreSQL {where}"


SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for the write lock


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so write transactions can be IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A write transaction takes the write lock at BEGIN: a deferred one that reads first and
    # writes later fails with SQLITE_BUSY_SNAPSHOT when another process committed in between.
    if connection.get_execution_options().get(WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


WRITE_OPTION = "govtrust_write"
CONNECT_TIMEOUT_SECONDS = 10  # PostgreSQL (libpq ``connect_timeout``), see make_engine
IDLE_IN_TRANSACTION_SECONDS = 60  # see postgresql_connect_args
KEEPALIVE_IDLE_SECONDS = 5
KEEPALIVE_INTERVAL_SECONDS = 2
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_SECONDS = 10
# With ``tcp_user_timeout`` set, Linux ends a connection whose keepalive probes have gone
# unanswered for that long: a peer host that vanished (crashed, cut off) is noticed about
# TCP_USER_TIMEOUT_SECONDS after it last answered, whether a statement was in flight or not.


_process_id: tuple[int, str] | None = None


def process_id() -> str:
    """This process's id in the cluster (pid, a random part, the host; at most 63 characters,
    PostgreSQL's ``application_name`` limit): every PostgreSQL session of the process carries it
    as its ``application_name``, and its cluster membership (:mod:`govtrust.lease`) is renewed
    under it, so what a process claimed can be tied to its live sessions. A forked child gets
    an id of its own."""
    global _process_id
    if _process_id is None or _process_id[0] != os.getpid():
        ident = f"{os.getpid()}:{secrets.token_hex(6)}:{socket.gethostname()}"[:63]
        _process_id = (os.getpid(), ident)
    return _process_id[1]


def postgresql_connect_args(
    url: str,
    *,
    idle_in_transaction_seconds: int = IDLE_IN_TRANSACTION_SECONDS,
    keepalive_idle_seconds: int = KEEPALIVE_IDLE_SECONDS,
) -> dict[str, Any]:
    """libpq parameters bounding what a lost peer costs, on both ends of each connection.

    * ``connect_timeout``: a server that does not answer fails the attempt in
      CONNECT_TIMEOUT_SECONDS, not the OS's TCP timeout (minutes).
    * client keepalives (``keepalives_idle`` …): a server host that vanished is noticed by a
      waiting call in about TCP_USER_TIMEOUT_SECONDS (see below; idle + interval × count
      where the user timeout is not supported), which then fails UNAVAILABLE instead of
      hanging.
    * ``tcp_user_timeout``, both ends: data left unacknowledged for TCP_USER_TIMEOUT_SECONDS
      ends the connection. Keepalives watch only an idle connection; a statement sent into a
      partition would otherwise wait for the kernel's retransmissions (which back off: after a
      20 s partition the next one can come seconds later, and by default they go on for about
      15 minutes) — the call, and the request-ledger claim it holds, stay stuck that long.
    * server side, per session (``options``): the server's own ``tcp_keepalives_*`` and
      ``tcp_user_timeout`` find a dead or cut-off client host in about TCP_USER_TIMEOUT_SECONDS
      and end its session, releasing its locks — a session idle *inside a transaction* (its
      client's next statement lost in a partition) holds its row locks, a claim's ledger row,
      a lease row, until then: with keepalives starting after 30 s, a 20 s partition held them
      for the whole partition and after it (the cluster soak).
      ``idle_in_transaction_session_timeout`` ends a session of a live but stuck client (the
      audit chain's lock has a tighter bound of its own,
      :data:`govtrust.audit.CHAIN_LOCK_IDLE_SECONDS`).

    ``application_name`` is the process's id (:func:`process_id`).

    A parameter already in the URL wins; 0 turns a bound off.
    """
    given = make_url(url).query
    args: dict[str, Any] = {}
    if "application_name" not in given:
        args["application_name"] = process_id()
    if "connect_timeout" not in given:
        args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if keepalive_idle_seconds > 0 and "keepalives" not in given:
        args.update(
            keepalives=1,
            keepalives_idle=keepalive_idle_seconds,
            keepalives_interval=KEEPALIVE_INTERVAL_SECONDS,
            keepalives_count=KEEPALIVE_COUNT,
        )
        if "tcp_user_timeout" not in given:
            args["tcp_user_timeout"] = TCP_USER_TIMEOUT_SECONDS * 1000
    if "options" not in given:
        options = [f"-c idle_in_transaction_session_timeout={idle_in_transaction_seconds * 1000}"]
        if keepalive_idle_seconds > 0:
            options += [
                f"-c tcp_keepalives_idle={keepalive_idle_seconds}",
                f"-c tcp_keepalives_interval={KEEPALIVE_INTERVAL_SECONDS}",
                f"-c tcp_keepalives_count={KEEPALIVE_COUNT}",
                f"-c tcp_user_timeout={TCP_USER_TIMEOUT_SECONDS * 1000}",
            ]
        args["options"] = " ".join(options)
    return args


# SQLSTATE classes of a fault a retry may outlive: 08 connection exception, 53 insufficient
# resources (too many connections), 57 operator intervention (admin shutdown, cannot connect
# now, statement cancelled), 58 system error; 55P03 lock not available.
_RETRYABLE_SQLSTATE_CLASSES = ("08", "53", "57", "58")
_RETRYABLE_SQLSTATES = ("55P03",)


def is_connection_fault(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot serve this call now (the server went away,
    restarts, refuses connections, the pool is exhausted, SQLite is locked) rather than that
    the call is wrong: a retry, against this replica or another, may succeed. The transports
    map it to UNAVAILABLE."""
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True  # the pool's checkout timed out; a connection could not be made usable
    if not isinstance(error, exc.DBAPIError):
        return _driver_connection_fault(error)
    if error.connection_invalidated:
        return True
    orig = error.orig
    if "database is locked" in str(orig):
        return True
    if not isinstance(error, exc.OperationalError | exc.InterfaceError):
        return False
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:  # no answer from a server at all: refused, reset, timed out, closed
        return True
    return sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES or sqlstate in _RETRYABLE_SQLSTATES


def _driver_connection_fault(error: BaseException) -> bool:
    """The same test for a driver's own exception, unwrapped by SQLAlchemy: code on a raw DBAPI
    cursor (:mod:`govtrust.fastsql`, the hot paths of token checks and refreshes) sees these."""
    if isinstance(error, sqlite3.OperationalError):
        return "database is locked" in str(error)
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        sqlstate = error.sqlstate
        if sqlstate is None:
            return True
        return sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES or sqlstate in _RETRYABLE_SQLSTATES
    return False


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    idle_in_transaction_seconds: int = IDLE_IN_TRANSACTION_SECONDS,
    keepalive_idle_seconds: int = KEEPALIVE_IDLE_SECONDS,
) -> Engine:
    """Create an engine with the settings govtrust needs on each backend."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        # Sized like PostgreSQL's: with the default 5 the pool threads plus inline readers
        # overflowed it, and every overflow connection was opened (and its pragmas run) anew.
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args = postgresql_connect_args(
        url,
        idle_in_transaction_seconds=idle_in_transaction_seconds,
        keepalive_idle_seconds=keepalive_idle_seconds,
    )
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, connect_args=connect_args
    )
    install_liveness_check(engine)
    return engine


# --- connection liveness ------------------------------------------------------------------------
#
# ``pool_pre_ping`` sends ``SELECT 1`` on every checkout: a round trip per transaction, which cost
# ~280 µs of client CPU (and a PostgreSQL backend wake-up) per checkout on the 2-core machine —
# more than many of the statements it guards. Instead, each checkout polls the connection's
# socket without blocking: an idle pooled connection has nothing to read, so a readable or
# hung-up socket means the server closed it (restart, pg_terminate_backend, idle timeout, a
# failover proxy) and the pool replaces it before use. A connection idle in the pool for
# ``PING_AFTER_IDLE_SECONDS`` or longer still gets a real ping (a silently dropped peer sends
# nothing). A failure that gets through anyway (the server goes away between checkout and the
# statement) invalidates the whole pool, as SQLAlchemy does for any disconnect error.

PING_AFTER_IDLE_SECONDS = 30.0
_CHECKED_IN_AT = "govtrust_checked_in_at"


def _peer_closed(dbapi_connection: Any) -> bool:
    """Whether the server side of an idle connection is gone (non-blocking socket poll)."""
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        return True
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))  # data, EOF, POLLHUP or POLLERR on an idle connection
    except Exception:  # noqa: BLE001 - e.g. the driver refusing fileno() on a closed connection
        return True


def install_liveness_check(engine: Engine) -> None:
    """Check pooled connections on checkout (socket poll; a ping after a long idle period)."""
    dialect = engine.dialect

    def checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            record.info[_CHECKED_IN_AT] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if _peer_closed(dbapi_connection):
            raise exc.DisconnectionError("the database server closed this pooled connection")
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.DisconnectionError(str(error)) from error
            raise

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class SqliteWriteGate:
    """Serialise write transactions on SQLite, across threads and processes.

    SQLite has one writer; a waiting writer polls in SQLite's busy handler, sleeping up to 100 ms
    between tries, which collapses throughput when ``--workers N`` processes contend. A thread
    lock plus ``flock`` on a side file (``<database>.<purpose>.lock``) hands the write lock over
    at once instead.
    """

    def __init__(self, database_path: str, purpose: str) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        if database_path and database_path != ":memory:":
            self._fd = os.open(f"{database_path}.{purpose}.lock", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()


def write_gate(engine: Engine, purpose: str) -> AbstractContextManager[None]:
    """A :class:`SqliteWriteGate` on SQLite; on other databases, a gate that does nothing."""
    if is_sqlite(engine):
        return SqliteWriteGate(engine.url.database or "", purpose)
    return contextlib.nullcontext()


class Database:
    """An engine plus its session factory; the one handle domain code receives."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        idle_in_transaction_seconds: int = IDLE_IN_TRANSACTION_SECONDS,
        keepalive_idle_seconds: int = KEEPALIVE_IDLE_SECONDS,
    ) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(
            self.url,
            pool_size=pool_size,
            idle_in_transaction_seconds=idle_in_transaction_seconds,
            keepalive_idle_seconds=keepalive_idle_seconds,
        )
        # Per-database values every new session sees in ``Session.info`` (the audit chain key,
        # installed by :func:`govtrust.audit.install_chain_key`).
        self.session_info: dict[str, Any] = {}
        self.sessionmaker: sessionmaker[Session] = sessionmaker(
            self.engine, expire_on_commit=False, info=self.session_info
        )
        self._write_sessionmaker: sessionmaker[Session] = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}),
            expire_on_commit=False,
            info=self.session_info,
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one write transaction: committed on success, rolled back on any error."""
        with self._write_sessionmaker.begin() as session:
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only (rolled back at the end)."""
        with self.sessionmaker() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
