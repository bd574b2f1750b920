"""Moving a live table's encrypted columns to another at-rest scheme, in batches, resumably.

The one loop behind ``govtrust reencrypt``; each package that owns encrypted columns calls it on
its own tables with its own cipher (``idp.reencryption``, ``license.reencryption``), so no
package touches another's rows. For each batch of rows, in key order (keyset pagination):

1. a short read picks the rows with a column not yet under the target scheme (``pending``, by
   the scheme byte: no decryption);
2. ``move`` decrypts those columns and encrypts them under the target scheme;
3. one short write transaction updates each row *only if its encrypted columns still hold the
   values read* (compare-and-set), so a writer that changed the row meanwhile is never
   overwritten: its row is read again and moved on the next round; then each moved row is read
   back and decrypted, and the batch commits only if every value equals what it was.

Nothing is remembered between runs: a run interrupted at any point (even ``kill -9``) leaves
every committed batch moved and verified and every other row as it was, and the next run skips
the moved rows by their scheme byte. Each run ends with one audit record per table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update

from govtrust import audit
from govtrust.db import Database
from govtrust.errors import FailedPrecondition

DEFAULT_BATCH_SIZE = 500
CONFLICT_ROUNDS = 5  # how often rows a concurrent writer changed are read and tried again

Row = Mapping[str, Any]
Progress = Callable[[int], None]
"""Called with the number of rows just handled (scanned, moved or not)."""


class VerificationFailed(FailedPrecondition):
    """A re-encrypted row did not decrypt back to its old values; its batch was rolled back."""


@dataclass(frozen=True)
class Move:
    """What ``move`` makes of a row: the new values of its changed columns and the plaintext
    of every encrypted column (to compare the row read back against)."""

    values: Mapping[str, Any]
    plain: Mapping[str, Any]


@dataclass(frozen=True)
class TableSpec:
    """One owner's table: its key, its encrypted columns and how to handle a row of them.

    ``pending(row)`` tells (by scheme byte) whether a column is not under the target scheme;
    ``move(row)`` re-encrypts; ``plain(row)`` decrypts every column (any scheme).
    """

    table: Table
    key: str
    columns: Sequence[str]
    pending: Callable[[Row], bool]
    move: Callable[[Row], Move]
    plain: Callable[[Row], Mapping[str, Any]]
    audit_action: str


@dataclass
class TableReport:
    """What one run did to one table."""

    table: str
    scheme: str
    rows: int = 0  # rows scanned
    moved: int = 0  # rows re-encrypted, committed
    verified: int = 0  # moved rows read back and equal to their old plaintext
    conflicts: int = 0  # rows a concurrent writer kept changing (left for the next run)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "scheme": self.scheme,
            "rows": self.rows,
            "moved": self.moved,
            "verified": self.verified,
            "conflicts": self.conflicts,
        }


def count_rows(db: Database, table: Table) -> int:
    """The rows of ``table`` (for a progress bar's total)."""
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def reencrypt_table(
    db: Database,
    spec: TableSpec,
    *,
    scheme: str,
    actor: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> TableReport:
    """Move every row of ``spec.table`` to ``scheme`` (see the module docstring)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = TableReport(spec.table.name, scheme)
    key = spec.table.c[spec.key]
    selected = [key, *(spec.table.c[name] for name in spec.columns)]
    last: Any = None
    conflicted: list[Any] = []
    while True:
        query = select(*selected).order_by(key).limit(batch_size)
        if last is not None:
            query = query.where(key > last)
        with db.read() as session:
            rows = [dict(r._mapping) for r in session.execute(query)]
        if not rows:
            break
        last = rows[-1][spec.key]
        conflicted += _move_batch(db, spec, rows, report)
        report.rows += len(rows)
        if progress is not None:
            progress(len(rows))
    for _ in range(CONFLICT_ROUNDS):
        if not conflicted:
            break
        again: list[Any] = []
        for start in range(0, len(conflicted), batch_size):
            keys = conflicted[start : start + batch_size]
            with db.read() as session:
                rows = [
                    dict(r._mapping)
                    for r in session.execute(select(*selected).where(key.in_(keys)))
                ]
            again += _move_batch(db, spec, rows, report)
        conflicted = again
    report.conflicts = len(conflicted)
    with db.transaction() as session:
        audit.append(
            session,
            actor=actor,
            action=spec.audit_action,
            target=f"table:{spec.table.name}",
            outcome="ok" if not conflicted else "partial",
            details=report.as_dict(),
        )
    return report


def _move_batch(
    db: Database, spec: TableSpec, rows: list[dict[str, Any]], report: TableReport
) -> list[Any]:
    """Move the pending ``rows`` in one transaction; the keys a concurrent writer changed.

    One executemany of compare-and-set UPDATEs (each matches only if the row's encrypted columns
    still hold what was read; ``IS NOT DISTINCT FROM``, so NULLs compare), then one read of the
    batch. Inside the transaction the UPDATE holds the row (PostgreSQL row lock, SQLite write
    lock), so a row reads back as the new values exactly when its UPDATE matched: fresh nonces
    make any other equality impossible."""
    moves = [(row, spec.move(row)) for row in rows if spec.pending(row)]
    if not moves:
        return []
    table = spec.table
    key = table.c[spec.key]
    columns = list(spec.columns)
    statement = (
        update(table)
        .where(
            key == bindparam("k_"),
            *(table.c[n].is_not_distinct_from(bindparam(f"old_{n}")) for n in columns),
        )
        .values({n: bindparam(f"new_{n}") for n in columns})
    )
    wanted = [{n: move.values.get(n, row[n]) for n in columns} for row, move in moves]
    params = [
        {"k_": row[spec.key], **{f"old_{n}": row[n] for n in columns}}
        | {f"new_{n}": value for n, value in new.items()}
        for (row, _move), new in zip(moves, wanted, strict=True)
    ]
    conflicts: list[Any] = []
    moved = 0
    with db.transaction() as session:
        connection = session.connection()
        connection.execute(statement, params)
        keys = [row[spec.key] for row, _move in moves]
        selected = select(key, *(table.c[n] for n in columns)).where(key.in_(keys))
        stored = {r[0]: dict(r._mapping) for r in connection.execute(selected)}
        for (row, move), new in zip(moves, wanted, strict=True):
            now = stored.get(row[spec.key])
            if now is None or any(now[n] != new[n] for n in columns):
                conflicts.append(row[spec.key])  # changed (or deleted) by another writer
                continue
            if spec.pending(now) or dict(spec.plain(now)) != dict(move.plain):
                raise VerificationFailed(
                    f"{table.name} {row[spec.key]}: the re-encrypted row does not decrypt to its "
                    "old values; its batch was rolled back"
                )
            moved += 1
    report.moved += moved
    report.verified += moved
    return conflicts
