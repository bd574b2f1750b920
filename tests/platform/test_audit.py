"""The audit log is a keyed hash chain with signed, time-stamped checkpoints: appends link, and
every edit, deletion, rewrite and truncation is named (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from asn1crypto import cms
from sqlalchemy import delete, select, update

from ca.authority import authority_for
from govtrust import audit
from govtrust.audit import (
    GENESIS_HASH,
    LEGACY_SCHEME,
    AuditCheckpoint,
    AuditRecord,
    ChainKey,
    ChainReport,
    Finding,
    checkpoint_problem,
    record_hash,
    verify_chain,
)
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.errors import FailedPrecondition
from govtrust.migrate import alembic_config, upgrade_to_head
from govtrust.platform import Platform
from govtrust.server.wiring import checkpoint_audit, open_wired, periodic_jobs
from hsm import MasterKey
from hsm.audit_key import AuditChainKey
from tests.unchanged import unchanged
from verify.service import audit_token_check


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
    with unchanged(database), pytest.raises(RuntimeError), database.transaction() as session:
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


# --- the keyed, checkpointed chain (issue #13, item 10) ----------------------------------------


@pytest.fixture
def platform(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    """A platform (master key in a fresh data directory, chain key installed) on both backends."""
    opened = open_wired(Settings(data_dir=tmp_path / "data", database_url=database_url))
    yield opened
    opened.close()


def _key(platform: Platform) -> AuditChainKey:
    return AuditChainKey(platform.master_key)


def _verify(platform: Platform, key: AuditChainKey | None = None) -> ChainReport:
    with platform.db.read() as session:
        return verify_chain(
            session,
            key or _key(platform),
            public_keys=platform.keystore.public_key,
            tokens=audit_token_check(platform),
        )


def _rows(db: Database) -> list[AuditRecord]:
    with db.read() as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


def _reseal(db: Database, key: ChainKey | None, scheme: str, start: int) -> None:
    """What an attacker with the database does: recompute every digest from ``start`` on."""
    with db.transaction() as session:
        rows = list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        prev = rows[start - 2].hash if start > 1 else GENESIS_HASH
        for row in rows[start - 1 :]:
            row.prev_hash, row.scheme = prev, scheme
            row.hash = record_hash(
                key,
                scheme,
                seq=row.seq,
                recorded_at=row.recorded_at,
                actor=row.actor,
                action=row.action,
                target=row.target,
                outcome=row.outcome,
                details=row.details,
                prev_hash=prev,
            )
            prev = row.hash


def test_platform_keys_every_record(platform: Platform) -> None:
    _append(platform.db, 3)
    rows = _rows(platform.db)
    assert {r.scheme for r in rows} == {"hmac-sha256/v1"}
    report = _verify(platform)
    assert report.ok and report.records == 3 and report.legacy_records == 0
    # The digests are MACs: recomputing them as plain SHA-256 does not give them.
    assert rows[0].hash != record_hash(
        None,
        LEGACY_SCHEME,
        seq=1,
        recorded_at=rows[0].recorded_at,
        actor=rows[0].actor,
        action=rows[0].action,
        target=rows[0].target,
        outcome=rows[0].outcome,
        details=rows[0].details,
        prev_hash=GENESIS_HASH,
    )
    other = _verify(platform, AuditChainKey(MasterKey.generate()))
    assert other.finding is Finding.REWRITTEN and other.broken_seq == 1


def test_rewrite_with_every_hash_recomputed_unkeyed_is_caught(platform: Platform) -> None:
    _append(platform.db, 5)
    with platform.db.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(actor="local:x"))
    _reseal(platform.db, None, LEGACY_SCHEME, 3)
    report = _verify(platform)
    assert report.finding is Finding.REWRITTEN
    assert report.broken_seq == 3 and report.records == 2
    assert report.reason == "an unkeyed record where the chain is keyed"


def test_rewrite_with_another_key_is_named_by_its_mac(platform: Platform) -> None:
    _append(platform.db, 5)
    with platform.db.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 4).values(target="forged"))
    _reseal(platform.db, AuditChainKey(MasterKey.generate()), "hmac-sha256/v1", 4)
    report = _verify(platform)
    assert report.finding is Finding.REWRITTEN
    assert report.broken_seq == 4 and report.reason == "its MAC fails against the key"


def test_rewrite_of_the_whole_chain_unkeyed_is_caught_by_the_checkpoint(
    platform: Platform,
) -> None:
    _append(platform.db, 4)
    assert checkpoint_audit(platform) is not None
    _reseal(platform.db, None, LEGACY_SCHEME, 1)
    report = _verify(platform)
    assert report.finding is Finding.REWRITTEN and report.broken_seq == 1


def test_deletion_in_the_middle_of_a_keyed_chain(platform: Platform) -> None:
    _append(platform.db, 4)
    with platform.db.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
    report = _verify(platform)
    assert report.finding is Finding.MISSING and report.broken_seq == 2


def test_checkpoint_is_signed_time_stamped_and_idempotent(platform: Platform) -> None:
    authority_for(platform)  # the CA's bootstrap (our TSA) audits its own records first
    _append(platform.db, 3)
    records = len(_rows(platform.db))
    checkpoint = checkpoint_audit(platform)
    assert checkpoint is not None
    assert (checkpoint.records, checkpoint.legacy_records) == (records, 0)
    assert checkpoint.head_hash == _rows(platform.db)[-1].hash
    assert checkpoint_problem(checkpoint, _key(platform), platform.keystore.public_key) is None
    token = cms.ContentInfo.load(checkpoint.tsa_token)
    tst = token["content"]["encap_content_info"]["content"].parsed
    assert (
        tst["message_imprint"]["hashed_message"].native
        == hashlib.sha256(checkpoint.signature).digest()
    )
    assert checkpoint_audit(platform) is None  # the head has not moved
    _append(platform.db, 1)
    later = checkpoint_audit(platform)
    assert later is not None and later.records == records + 1
    report = _verify(platform)
    assert report.ok and report.checkpoint is not None and report.checkpoint.id == later.id


def test_truncation_is_reported_against_the_latest_checkpoint(platform: Platform) -> None:
    _append(platform.db, 5)
    checkpoint = checkpoint_audit(platform)
    assert checkpoint is not None
    with platform.db.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= 4))
    report = _verify(platform)
    assert report.finding is Finding.TRUNCATED and report.records == 3
    assert report.reason is not None
    assert f"ends at record 3 but checkpoint {checkpoint.id}" in report.reason
    assert "covers 5" in report.reason


def test_truncation_then_new_records_differs_from_the_checkpoint_head(
    platform: Platform,
) -> None:
    _append(platform.db, 4)
    checkpoint = checkpoint_audit(platform)
    assert checkpoint is not None
    with platform.db.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= 3))
    _append(platform.db, 3)  # the chain is long enough again, and keyed, but not the same
    report = _verify(platform)
    assert report.finding is Finding.TRUNCATED and report.broken_seq == 4
    assert report.reason is not None and "differs from the head of checkpoint" in report.reason


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("records", 2, "its MAC fails against the key"),
        ("signature", b"\x30\x00", "its signature does not verify"),
        ("key_id", "0" * 32, "its signing key"),
    ],
)
def test_a_tampered_checkpoint_is_not_genuine(
    platform: Platform, column: str, value: object, problem: str
) -> None:
    _append(platform.db, 3)
    assert checkpoint_audit(platform) is not None
    with platform.db.transaction() as session:
        session.execute(update(AuditCheckpoint).values({column: value}))
    report = _verify(platform)
    assert report.finding is Finding.FORGED_CHECKPOINT
    assert report.reason is not None and problem in report.reason


def test_a_time_stamp_not_signed_by_our_tsa_is_not_genuine(platform: Platform) -> None:
    _append(platform.db, 2)
    checkpoint = checkpoint_audit(platform)
    assert checkpoint is not None
    token = cms.ContentInfo.load(checkpoint.tsa_token)
    signer = token["content"]["signer_infos"][0]
    signature = bytearray(signer["signature"].native)
    signature[-1] ^= 0x01  # same imprint, same certificate, a signature that does not verify
    signer["signature"] = bytes(signature)
    with platform.db.transaction() as session:
        session.execute(update(AuditCheckpoint).values(tsa_token=token.dump(force=True)))
    with platform.db.read() as session:  # the imprint alone still matches...
        assert verify_chain(session, _key(platform), public_keys=platform.keystore.public_key).ok
    report = _verify(platform)  # ...the token's signature does not
    assert report.finding is Finding.FORGED_CHECKPOINT
    assert report.reason is not None and "time-stamp is not our TSA's" in report.reason


def test_a_process_without_the_key_may_not_extend_a_keyed_chain(platform: Platform) -> None:
    _append(platform.db, 2)
    bare = Database(platform.db.url)
    try:
        with (
            unchanged(platform.db, platform.keystore),
            pytest.raises(FailedPrecondition, match="this process has no chain key"),
        ):
            _append(bare, 1)
    finally:
        bare.dispose()
    assert len(_rows(platform.db)) == 2
    assert _verify(platform).ok


def test_legacy_prefix_then_keyed_records_verify(database: Database) -> None:
    _append(database, 3)  # no key installed: the pre-0010 scheme
    key = AuditChainKey(MasterKey.generate())
    audit.install_chain_key(database, key)
    _append(database, 2)
    assert [r.scheme for r in _rows(database)] == ["sha256"] * 3 + ["hmac-sha256/v1"] * 2
    with database.read() as session:
        report = verify_chain(session, key)
    assert report.ok and report.records == 5 and report.legacy_records == 3


def _cli(*args: str, url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"GOVTRUST_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "govtrust", "audit", *args, "--data-dir", str(data_dir)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_cli_checkpoint_and_verify_each_finding(platform: Platform, tmp_path: Path) -> None:
    url, data_dir = platform.db.url, platform.settings.data_dir
    authority_for(platform)  # the CA's bootstrap audits its own records first
    _append(platform.db, 5)
    n = len(_rows(platform.db))
    made = _cli("checkpoint", "--out", str(tmp_path / "cp.json"), url=url, data_dir=data_dir)
    assert made.returncode == 0, made.stderr
    assert f"audit checkpoint 1 made: {n} records" in made.stdout
    ok = _cli("verify", url=url, data_dir=data_dir)
    assert ok.returncode == 0, ok.stderr
    assert f"audit chain intact: {n} records; checkpoint 1 covers {n}" in ok.stdout
    # Truncate the tail and delete the checkpoint too: the database alone cannot tell...
    with platform.db.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= n - 1))
        session.execute(delete(AuditCheckpoint))
    blind = _cli("verify", url=url, data_dir=data_dir)
    assert blind.returncode == 0
    assert f"intact: {n - 2} records; no checkpoint yet" in blind.stdout
    # ...the checkpoint kept apart can.
    cut = _cli("verify", "--checkpoint", str(tmp_path / "cp.json"), url=url, data_dir=data_dir)
    assert cut.returncode == 5, cut.stdout + cut.stderr
    assert f"audit chain truncated: the chain ends at record {n - 2} but checkpoint 1" in (
        cut.stdout
    )
    with platform.db.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(actor="x"))
    rewritten = _cli("verify", url=url, data_dir=data_dir)
    assert rewritten.returncode == 4
    assert "audit chain rewritten at record 2: its MAC fails against the key" in rewritten.stdout
    with platform.db.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
    missing = _cli("verify", url=url, data_dir=data_dir)
    assert missing.returncode == 3
    assert "audit chain broken at record 2: deleted" in missing.stdout


def _migrate(database: Database, action: str, target: str) -> None:
    config = alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(alembic_command, action)(config, target)


def test_migration_0010_keeps_records_written_before_it_verifiable(database: Database) -> None:
    _migrate(database, "downgrade", "0008")
    assert "audit_checkpoints" not in sa.inspect(database.engine).get_table_names()
    prev = GENESIS_HASH
    with database.engine.begin() as connection:  # records as the unkeyed code wrote them
        for seq in (1, 2):
            recorded_at = datetime(2026, 1, seq, tzinfo=UTC)
            row: dict[str, object] = {
                "seq": seq,
                "recorded_at": recorded_at,
                "actor": "local:old",
                "action": "old.act",
                "target": f"thing/{seq}",
                "outcome": "ok",
                "details": "{}",
                "prev_hash": prev,
            }
            digest = hashlib.sha256(
                audit.canonical_json(
                    {**row, "recorded_at": recorded_at.isoformat(timespec="microseconds")}
                )
            ).hexdigest()
            connection.execute(
                sa.text(
                    "INSERT INTO audit_log (seq, recorded_at, actor, action, target, outcome,"
                    " details, prev_hash, hash) VALUES (:seq, :recorded_at, :actor, :action,"
                    " :target, :outcome, :details, :prev_hash, :hash)"
                ),
                {**row, "hash": digest},
            )
            prev = digest
    upgrade_to_head(database.engine)
    key = AuditChainKey(MasterKey.generate())
    audit.install_chain_key(database, key)
    _append(database, 2)
    rows = _rows(database)
    assert [r.scheme for r in rows] == ["sha256", "sha256", key.scheme, key.scheme]
    assert rows[2].prev_hash == prev
    with database.read() as session:
        report = verify_chain(session, key)
    assert report.ok and report.records == 4 and report.legacy_records == 2


async def _until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Await ``condition`` (checked off the event loop) within ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_server_job_checkpoints_the_head_periodically(platform: Platform) -> None:
    platform.settings = replace(platform.settings, audit_checkpoint_seconds=1)
    _append(platform.db, 2)

    def covered() -> bool:
        with platform.db.read() as session:
            latest = audit.latest_checkpoint(session)
        return latest is not None and latest.records == len(_rows(platform.db))

    async def scenario() -> None:
        stop = asyncio.Event()
        jobs = asyncio.create_task(periodic_jobs(platform, stop))
        await _until(covered)
        await asyncio.to_thread(_append, platform.db, 1)  # the head moves: the next round follows
        await _until(covered)
        stop.set()
        await asyncio.wait_for(jobs, timeout=60)

    asyncio.run(scenario())
    with platform.db.read() as session:
        assert session.query(AuditCheckpoint).count() >= 2
    assert _verify(platform).ok
