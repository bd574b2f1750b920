"""The audit log is a hash chain: appends link, and any tampering is named by its record."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import update

from govtrust import audit
from govtrust.audit import GENESIS_HASH, AuditRecord, verify_chain
from govtrust.db import Database


def _append(db: Database, n: int, actor: str = "local:test") -> None:
    for i in range(n):
        with db.transaction() as session:
            audit.append(
                session,
                actor=actor,
                action="test.act",
                target=f"thing/{i}",
                details={"i": i, "名称": "测试"},
            )


def test_chain_links_and_verifies(database: Database) -> None:
    _append(database, 5)
    with database.read() as session:
        records = list(session.query(AuditRecord).order_by(AuditRecord.seq))
        report = verify_chain(session)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert report.ok and report.records == 5


def test_append_rolls_back_with_its_transaction(database: Database) -> None:
    _append(database, 1)
    with pytest.raises(RuntimeError), database.transaction() as session:
        audit.append(session, actor="local:test", action="x", target="y")
        raise RuntimeError("business change failed")
    with database.read() as session:
        assert session.query(AuditRecord).count() == 1
        assert verify_chain(session).ok


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "local:someone-else"), ("details", '{"i":99}'), ("prev_hash", "f" * 64)],
)
def test_tampering_names_the_row(database: Database, column: str, value: str) -> None:
    _append(database, 6)
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 4).values({column: value}))
    with database.read() as session:
        report = verify_chain(session)
    assert not report.ok
    assert report.broken_seq == 4
    assert report.records == 3


def test_deleted_row_is_named(database: Database) -> None:
    _append(database, 4)
    with database.transaction() as session:
        session.query(AuditRecord).filter(AuditRecord.seq == 2).delete()
    with database.read() as session:
        report = verify_chain(session)
    assert report.broken_seq == 2
    assert report.reason is not None and "missing" in report.reason


def test_concurrent_appends_never_fork(database: Database) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            _append(database, 15, actor=f"local:t{k}")
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with database.read() as session:
        report = verify_chain(session)
    assert report.ok and report.records == 60


def test_cli_audit_verify_names_tampered_row(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    _append(db, 3)
    env = {"GOVTRUST_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "govtrust", "audit", "verify", "--data-dir", str(tmp_path)]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "intact: 3 records" in ok.stdout
    with db.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(target="forged"))
    db.dispose()
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "broken at record 2" in bad.stdout
