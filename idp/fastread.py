"""One-row, read-only look-ups for the hot check paths, without ORM or Core overhead.

``CheckCitizen`` is called by every business system for every application; through a Core
``engine.connect()`` one look-up costs ~20x the query itself (pool checkout, the SQLite
``BEGIN`` listener, result machinery, reset on return). :class:`PointReader` keeps one private,
autocommit DBAPI connection per thread (each statement sees the latest committed data) and runs
a fixed SQL string on it. Only SQLite (``sqlite3``) and PostgreSQL (psycopg 3) are supported;
anything else falls back to the engine's pool.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any

from sqlalchemy.engine import Engine


class PointReader:
    """Per-thread private connections for single-row SELECTs (``?`` placeholders in SQL)."""

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
