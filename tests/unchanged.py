"""The one "nothing changed" check every refusal test uses (issue #23 item 4).

``with unchanged(db, keystore, *paths):`` snapshots, on entry, every table the database really
has (reflected, so a table no model declares is still seen: nothing is excluded silently), the
key store's live keys (soft store rows and PKCS#11 objects alike, through ``KeyStore.list``) and
the given files or folders; on exit, when the block did not raise anything but the expected
refusal, it fails naming each table and the rows that were added, removed or altered. A table
(or a given file) that legitimately changes on a refused call (a rate limit, a request log) is
named in ``allow`` and the test says why. ``db`` may be None where the refused call has no
database (a PKCS#11 key store, a configuration file)::

    with unchanged(service.db), pytest.raises(PermissionDenied):
        service.issue(STRANGER, request)

Put ``unchanged`` outside ``pytest.raises`` so the check runs after the refusal was caught.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import MetaData, Table, inspect, select
from sqlalchemy.engine import Engine

from govtrust.db import Database
from hsm.keystore import KeyStore

Row = tuple[object, ...]
TableRows = dict[Row, Row]
"""A table's rows by primary key (the whole row where the table has none)."""

_SHOWN = 5  # rows named per table and kind in a failure message
_WIDTH = 300  # characters of a row shown


def _show(row: Row) -> str:
    text = repr(row)
    return text if len(text) <= _WIDTH else text[:_WIDTH] + "…"


def _engine(db: Database | Engine) -> Engine:
    return db if isinstance(db, Engine) else db.engine


def _tables(engine: Engine) -> list[Table]:
    metadata = MetaData()
    metadata.reflect(bind=engine)
    return sorted(metadata.tables.values(), key=lambda table: table.name)


def _key(table: Table) -> list[int]:
    names = [column.name for column in table.primary_key.columns]
    columns = [column.name for column in table.columns]
    return [columns.index(name) for name in names] or list(range(len(columns)))


def snapshot_database(
    db: Database | Engine,
    tables: Iterable[Table] | None = None,
    *,
    ignore_columns: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, TableRows]:
    """Every table's rows, keyed by primary key, read in one transaction ordered by the key.

    ``ignore_columns`` names, per table, columns whose values are left out (shown as ``...``).
    """
    engine = _engine(db)
    chosen = list(tables) if tables is not None else _tables(engine)
    ignored = {name: set(columns) for name, columns in (ignore_columns or {}).items()}
    result: dict[str, TableRows] = {}
    with engine.connect() as connection:
        for table in chosen:
            positions = _key(table)
            columns = list(table.columns)
            order = [columns[i] for i in positions]
            blank = {
                i for i, column in enumerate(columns) if column.name in ignored.get(table.name, ())
            }
            rows: TableRows = {}
            for row in connection.execute(select(table).order_by(*order)):
                values = tuple(... if i in blank else v for i, v in enumerate(row))
                rows[tuple(values[i] for i in positions)] = values
            result[table.name] = rows
        connection.rollback()
    return result


def table_digest(rows: TableRows) -> str:
    """A short digest of a table's snapshot (for messages and quick comparisons)."""
    return hashlib.sha256(repr(sorted(rows.items(), key=repr)).encode()).hexdigest()[:16]


def snapshot_keys(keystore: KeyStore) -> dict[str, tuple[str, str, bytes]]:
    """The key store's live keys: id -> (label, algorithm, public key DER)."""
    return {
        ref.key_id: (ref.label, str(ref.algorithm), ref.public_key_der) for ref in keystore.list()
    }


def snapshot_files(paths: Iterable[Path | str]) -> dict[str, str | None]:
    """SHA-256 of each given file and of every file under each given folder (None: absent)."""
    result: dict[str, str | None] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                result[str(child)] = hashlib.sha256(child.read_bytes()).hexdigest()
            result.setdefault(str(path), "folder")
        elif path.is_file():
            result[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            result[str(path)] = None
    return result


def _diff_rows(name: str, before: TableRows, after: TableRows) -> str | None:
    if before == after:
        return None
    added = [after[k] for k in after if k not in before]
    removed = [before[k] for k in before if k not in after]
    altered = [(before[k], after[k]) for k in before if k in after and before[k] != after[k]]
    lines = [
        f"table {name!r} changed ({table_digest(before)} -> {table_digest(after)}): "
        f"{len(added)} added, {len(removed)} removed, {len(altered)} altered"
    ]
    lines += [f"  + {_show(row)}" for row in added[:_SHOWN]]
    lines += [f"  - {_show(row)}" for row in removed[:_SHOWN]]
    lines += [f"  ~ {_show(old)}\n    -> {_show(new)}" for old, new in altered[:_SHOWN]]
    return "\n".join(lines)


def _diff_mapping(
    what: str, before: Mapping[str, object], after: Mapping[str, object]
) -> str | None:
    if before == after:
        return None
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    altered = sorted(k for k in before if k in after and before[k] != after[k])
    return f"{what} changed: added {added}, removed {removed}, altered {altered}"


@dataclass
class Snapshot:
    """What :func:`unchanged` compares: tables, keys and files at one moment."""

    tables: dict[str, TableRows]
    keys: dict[str, tuple[str, str, bytes]] | None
    files: dict[str, str | None]


def _allowed_file(name: str, allowed: set[str]) -> bool:
    path = Path(name)
    return any(path == Path(a) or Path(a) in path.parents for a in allowed)


def changes(before: Snapshot, after: Snapshot, allow: Iterable[str | Path] = ()) -> list[str]:
    """What differs between two snapshots, one message per table / key store / file set.

    ``allow`` names tables, and files or folders (whose files may then change).
    """
    allowed = {str(a) for a in allow}
    problems: list[str] = []
    for name in sorted(set(before.tables) | set(after.tables)):
        if name in allowed:
            continue
        if name not in after.tables or name not in before.tables:
            problems.append(
                f"table {name!r} was {'dropped' if name in before.tables else 'created'}"
            )
            continue
        message = _diff_rows(name, before.tables[name], after.tables[name])
        if message:
            problems.append(message)
    if before.keys is not None and after.keys is not None:
        message = _diff_mapping("key store", before.keys, after.keys)
        if message:
            problems.append(message)
    files_before = {k: v for k, v in before.files.items() if not _allowed_file(k, allowed)}
    files_after = {k: v for k, v in after.files.items() if not _allowed_file(k, allowed)}
    message = _diff_mapping("files", files_before, files_after)
    if message:
        problems.append(message)
    return problems


SPENT_BY_EVERY_REQUEST = ("rate_limit_buckets",)
"""Tables every request writes whether or not it is refused: the shared rate-limit buckets
(govtrust.shared_limits) — a refused request still spends its caller's budget, which is the
limit working, not the refusal changing state."""

SCHEDULE_HEARTBEAT = {"cluster_leases": ("expires_at",)}
"""Columns a running server's cluster-job schedule (govtrust.lease) moves on its own clock: the
holder renews its leases every tick. Ignored by :func:`unchanged` unless ``schedule=True``; a
lease changing hands (holder, token) is still a change."""

SCHEDULE_PERIODS = ("cluster_job_runs", "cluster_members")
"""The schedule's record of which period of which job ran: a new period starts on the clock
(every two minutes for ``ca.refresh``), whatever the request under test does; and the serving
processes' membership rows (``cluster_members``, renewed every second). Allowed by
:func:`unchanged` unless ``schedule=True``."""


@contextmanager
def unchanged(
    db: Database | Engine | None,
    keystore: KeyStore | None = None,
    *paths: Path | str,
    allow: Iterable[str | Path] = (),
    schedule: bool = False,
) -> Iterator[Snapshot]:
    """Fail if the block changes any row of any table, any live key or file (but ``allow``).

    ``allow`` names tables, or files and folders among (or under) ``paths``, that may change.
    ``db`` None checks the key store and files only. The cluster-job schedule's own bookkeeping
    (lease renewals, new periods; :data:`SCHEDULE_HEARTBEAT`, :data:`SCHEDULE_PERIODS`) is left
    out unless ``schedule`` is true: a test of the schedule itself checks it too.
    """
    allowed = tuple(str(a) for a in allow)
    engine = _engine(db) if db is not None else None
    names = set(inspect(engine).get_table_names()) if engine is not None else set()
    allowed += tuple(name for name in SPENT_BY_EVERY_REQUEST if name in names)
    if not schedule:
        allowed += tuple(name for name in SCHEDULE_PERIODS if name in names)
    ignore_columns = {} if schedule else SCHEDULE_HEARTBEAT
    given = [Path(p) for p in paths]
    unknown = [
        name
        for name in allowed
        if name not in names and not any(Path(name) == p or p in Path(name).parents for p in given)
    ]
    assert not unknown, f"allow names tables the database does not have: {unknown}"
    tables = _tables(engine) if engine is not None else []

    def take() -> Snapshot:
        return Snapshot(
            snapshot_database(engine, tables, ignore_columns=ignore_columns)
            if engine is not None
            else {},
            snapshot_keys(keystore) if keystore is not None else None,
            snapshot_files(paths),
        )

    before = take()
    yield before
    after = take()
    now = set(inspect(engine).get_table_names()) if engine is not None else set()
    problems = [f"tables appeared or vanished: {sorted(now ^ names)}"] if now != names else []
    problems += changes(before, after, allowed)
    assert not problems, "the refused call changed state:\n" + "\n".join(problems)
