"""Hot-path SQL on the driver connection (the token endpoint's refresh and validation queries).

SQLAlchemy's statement machinery costs a few hundred microseconds per statement, more than the
SQLite query itself; the three statements of a refresh grant and the one of a token validation
run here as plain DB-API calls on a pooled connection instead. Statements are written once with
``:name`` parameters and translated to the driver's style (sqlite3 named, psycopg pyformat).
Datetimes are stored the way SQLAlchemy stores them on each backend, so ORM code reads them back.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from govtrust.db import SQLITE_BUSY_TIMEOUT_MS

_PARAM = re.compile(r":([a-z_]+)")


class WriteBusy(Exception):
    """A non-waiting write found the database's write lock taken."""


class FastSql:
    """Driver-level execution for a few fixed statements."""

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
        """A stored datetime back as an aware UTC datetime."""
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

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
