"""Driver-level SQL for the hot paths: one facility any package uses for its own tables.

SQLAlchemy's statement machinery costs a few hundred microseconds per statement (pool checkout,
the SQLite ``BEGIN`` listener, result machinery, reset on return), more than a SQLite query
itself. The two paths that run thousands of times a second use the DB-API directly:

* :class:`PointReader` — single-row, read-only look-ups (``CheckCitizen``, a certificate's
  status, an access token's grant) on one private autocommit connection per thread, so each
  statement sees the latest committed data. SQL uses ``?`` placeholders.
* :class:`FastSql` — a few fixed statements in short read or write transactions on pooled
  connections (the token endpoint's refresh rotation, with ``BEGIN IMMEDIATE`` on SQLite and a
  non-waiting variant). SQL uses ``:name`` placeholders.

Both translate their placeholders to the driver's style (sqlite3, psycopg), support only SQLite
and PostgreSQL natively, and store datetimes the way SQLAlchemy does on each backend, so ORM code
reads the rows back. A package runs its own statements here on its own tables only
(docs/architecture.md, "Who owns which table").
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from govtrust.db import SQLITE_BUSY_TIMEOUT_MS


class PointReader:
    """Per-thread private connections for single-row SELECTs (``?`` placeholders in SQL);
    anything but SQLite and psycopg 3 falls back to the engine's pool."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self.dialect = engine.dialect.name
        self._native = self.dialect in {"sqlite", "postgresql"} and (
            self.dialect == "sqlite" or engine.dialect.driver == "psycopg"
        )

    @property
    def is_local(self) -> bool:
        """True when a look-up is a local file read (SQLite): cheap enough to run inline."""
        return self.dialect == "sqlite"

    def sql(self, text: str) -> str:
        """Adapt ``?`` placeholders to the driver's style."""
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    def _connect(self) -> Any:
        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        if self.dialect == "sqlite":
            connection: Any = sqlite3.connect(
                str(cargs[0]), timeout=30, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA query_only=ON")
        else:
            import psycopg

            connection = psycopg.connect(*cargs, **cparams, autocommit=True)
        with self._lock:
            self._connections.append(connection)
        self._local.connection = connection
        return connection

    def _forget(self, connection: Any) -> None:
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        with contextlib.suppress(Exception):  # broken already; nothing more to do
            connection.close()

    def fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Run ``sql`` (already adapted by :meth:`sql`) and return its first row."""
        if not self._native:
            with self._engine.connect() as fallback:
                row = fallback.exec_driver_sql(sql, params).first()
                return None if row is None else tuple(row)
        connection = getattr(self._local, "connection", None) or self._connect()
        try:
            result: tuple[Any, ...] | None = connection.execute(sql, params).fetchone()
        except Exception:  # noqa: BLE001 - any driver error on a stale connection; retried once
            # A dropped or closed connection (database restart, close()) must not poison this
            # thread: forget it and retry once on a fresh one (a read is safe to repeat).
            self._forget(connection)
            result = self._connect().execute(sql, params).fetchone()
        return result

    def close(self) -> None:
        """Close every connection opened by any thread."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(Exception):  # closing is best effort
                connection.close()


def stored_datetime(value: Any) -> datetime:
    """A datetime column as either reader returns it (naive UTC text on SQLite, a datetime on
    PostgreSQL), as an aware UTC datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_PARAM = re.compile(r":([a-z_]+)")


class WriteBusy(Exception):
    """A non-waiting write found the database's write lock taken."""


class FastSql:
    """Driver-level execution of a few fixed statements (``:name`` placeholders in SQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"

    def sql(self, statement: str) -> str:
        """``statement`` in the driver's parameter style."""
        return statement if self.sqlite else _PARAM.sub(r"%(\1)s", statement)

    def ts(self, moment: datetime) -> Any:
        """A datetime as the backend's column stores it (naive UTC text on SQLite)."""
        if self.sqlite:
            # SQLAlchemy's SQLite text form, "%Y-%m-%d %H:%M:%S.%f"; isoformat is ~10x cheaper
            return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return moment

    def from_db(self, value: Any) -> datetime:
        """A stored datetime back as an aware UTC datetime (:func:`stored_datetime`)."""
        return stored_datetime(value)

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        """A cursor for reads; the connection goes back to the pool rolled back."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            connection.rollback()
        finally:
            connection.close()

    @contextlib.contextmanager
    def write(self, *, wait: bool = True) -> Iterator[Any]:
        """A cursor in one write transaction (``BEGIN IMMEDIATE`` on SQLite), committed at the end.

        Any exception rolls back. With ``wait=False`` on SQLite, a write lock held by another
        connection raises :class:`WriteBusy` at once instead of waiting in the busy handler.
        """
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                if self.sqlite:
                    self._begin_immediate(cursor, wait)
                yield cursor
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                cursor.close()
        finally:
            connection.close()

    @staticmethod
    def _begin_immediate(cursor: Any, wait: bool) -> None:
        if wait:
            cursor.execute("BEGIN IMMEDIATE")
            return
        cursor.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:  # SQLITE_BUSY: another writer holds the lock
            raise WriteBusy(str(error)) from error
        finally:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
