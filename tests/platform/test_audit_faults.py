"""Planted-fault tests for the audit chain (issue #23): a record's ``outcome`` is part of its
digest, and the previous-hash link is checked on its own (an attacker who can recompute one
unkeyed digest still breaks the next record's link).

The digests are checked against values computed here from literal canonical JSON with hashlib
and hmac, not by :func:`govtrust.audit.record_hash`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from sqlalchemy import select, update

from govtrust import audit
from govtrust.audit import (
    GENESIS_HASH,
    LEGACY_SCHEME,
    AuditRecord,
    Finding,
    record_hash,
    verify_chain,
)
from govtrust.db import Database, as_utc

_TEST_KEY = b"test-only audit chain key, 32 b."
_TEST_SCHEME = "hmac-sha256/test"


class _TestKey:
    """A chain key with a known secret, so the expected MAC can be computed independently."""

    scheme = _TEST_SCHEME

    def mac(self, data: bytes) -> bytes:
        return hmac.new(_TEST_KEY, data, hashlib.sha256).digest()


WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
FIELDS = {
    "seq": 1,
    "recorded_at": WHEN,
    "actor": "local:测试",
    "action": "ca.issue",
    "target": "cert/1",
    "outcome": "denied",
    "details": '{"a":1}',
    "prev_hash": GENESIS_HASH,
}
# The canonical JSON of FIELDS, written out by hand (sorted keys, no spaces, UTF-8).
LITERAL_BODY = (
    '{"action":"ca.issue","actor":"local:测试","details":"{\\"a\\":1}","outcome":"denied",'
    '"prev_hash":"' + GENESIS_HASH + '","recorded_at":"2026-01-02T03:04:05.678901+00:00",'
    '"seq":1,"target":"cert/1"}'
)


def test_the_literal_body_is_canonical_json() -> None:
    as_dict = {**FIELDS, "recorded_at": WHEN.isoformat(timespec="microseconds")}
    assert json.loads(LITERAL_BODY) == as_dict


def test_legacy_digest_is_sha256_of_every_field_including_the_outcome() -> None:
    expected = hashlib.sha256(LITERAL_BODY.encode()).hexdigest()
    assert record_hash(None, LEGACY_SCHEME, **FIELDS) == expected  # type: ignore[arg-type]
    other = record_hash(None, LEGACY_SCHEME, **{**FIELDS, "outcome": "ok"})  # type: ignore[arg-type]
    assert other != expected


def test_keyed_digest_is_the_hmac_of_every_field_and_the_scheme() -> None:
    body = LITERAL_BODY[:-1].replace(',"seq":1,', f',"scheme":"{_TEST_SCHEME}","seq":1,') + "}"
    expected = hmac.new(_TEST_KEY, body.encode(), hashlib.sha256).hexdigest()
    assert record_hash(_TestKey(), _TEST_SCHEME, **FIELDS) == expected  # type: ignore[arg-type]


def _append_outcomes(db: Database, outcomes: list[str]) -> None:
    for i, outcome in enumerate(outcomes):
        with db.transaction() as session:
            audit.append(
                session, actor="local:test", action="test.act", target=f"t/{i}", outcome=outcome
            )


def _report(db: Database, key: _TestKey | None = None) -> audit.ChainReport:
    with db.read() as session:
        return verify_chain(session, key)


def test_an_edited_outcome_is_named(database: Database) -> None:
    _append_outcomes(database, ["ok", "ok", "denied", "ok"])
    assert _report(database).ok
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 3).values(outcome="ok"))
    report = _report(database)
    assert report.finding is Finding.EDITED
    assert report.broken_seq == 3 and report.records == 2
    assert report.reason == "content does not match its hash"


def test_an_edited_outcome_fails_the_mac_of_a_keyed_chain(database: Database) -> None:
    audit.install_chain_key(database, _TestKey())
    _append_outcomes(database, ["denied", "ok", "ok"])
    assert _report(database, _TestKey()).ok
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 1).values(outcome="ok"))
    report = _report(database, _TestKey())
    assert report.finding is Finding.REWRITTEN
    assert report.broken_seq == 1 and report.reason == "its MAC fails against the key"


def test_a_record_edited_and_rehashed_breaks_the_next_link(database: Database) -> None:
    """Unkeyed digests can be recomputed by anyone; the next record's stored link cannot be
    changed without breaking its own digest, so the link check names the record after."""
    _append_outcomes(database, ["ok"] * 5)
    with database.transaction() as session:
        row = session.scalars(select(AuditRecord).where(AuditRecord.seq == 3)).one()
        row.outcome = "denied"
        row.hash = hashlib.sha256(
            audit.canonical_json(
                {
                    "seq": row.seq,
                    "recorded_at": as_utc(row.recorded_at).isoformat(timespec="microseconds"),
                    "actor": row.actor,
                    "action": row.action,
                    "target": row.target,
                    "outcome": row.outcome,
                    "details": row.details,
                    "prev_hash": row.prev_hash,
                }
            )
        ).hexdigest()
    report = _report(database)
    assert report.finding is Finding.EDITED
    assert report.broken_seq == 4 and report.records == 3
    assert report.reason == "previous-hash link does not match"
