"""Tests that kill the surviving mutants of govtrust.audit (docs/testing.md).

They use a chain key with a known secret, an ECDSA key of their own and a minimal RFC 3161
token (only its imprint is read here), so every expected value (digest, MAC, message, field)
is computed in the test and the checkpoint and verification code runs without a platform.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms, core, tsp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import delete, select, update

from govtrust import audit
from govtrust.audit import (
    GENESIS_HASH,
    LEGACY_SCHEME,
    AuditCheckpoint,
    AuditRecord,
    ChainReport,
    CheckpointSigner,
    Finding,
    canonical_json,
    checkpoint_body,
    checkpoint_from_json,
    checkpoint_problem,
    checkpoint_to_json,
    latest_checkpoint,
    make_checkpoint,
    next_link,
    record_hash,
    verify_chain,
)
from govtrust.db import Database
from govtrust.errors import FailedPrecondition
from tests.unchanged import unchanged

SCHEME = "hmac-sha256/test"
SECRET = b"test-only audit chain key, 32 b."
KEY_ID = "cp-key-1"
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)  # no microseconds: isoformat must add them


class Key:
    """A chain key with a known secret."""

    def __init__(self, scheme: str = SCHEME, secret: bytes = SECRET) -> None:
        self.scheme = scheme
        self.secret = secret

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, hashlib.sha256).digest()


def _token(signature: bytes, algorithm: str = "sha256") -> bytes:
    """A CMS ContentInfo carrying a TSTInfo whose imprint is SHA-256(signature)."""
    tst = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": "1.2.3.4",
            "message_imprint": {
                "hash_algorithm": {"algorithm": algorithm},
                "hashed_message": hashlib.sha256(signature).digest(),
            },
            "serial_number": 1,
            "gen_time": WHEN,
        }
    )
    signed = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst.dump()),
            },
            "signer_infos": [],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


class Signer:
    """An ECDSA P-256 checkpoint signer and a stand-in TSA (records what it was given)."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.signed: list[bytes] = []
        self.stamped: list[bytes] = []

    def sign(self, body: bytes) -> bytes:
        self.signed.append(body)
        return self.private.sign(body, ec.ECDSA(hashes.SHA256()))

    def timestamp(self, signature: bytes) -> tuple[bytes, datetime]:
        self.stamped.append(signature)
        return _token(signature), WHEN

    def public_keys(self, key_id: str) -> bytes:
        if key_id != KEY_ID:
            raise KeyError(key_id)
        return self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def checkpoint_signer(self) -> CheckpointSigner:
        return CheckpointSigner(key_id=KEY_ID, sign=self.sign, timestamp=self.timestamp)


def _append(db: Database, n: int) -> list[AuditRecord]:
    made = []
    for i in range(n):
        with db.transaction() as session:
            made.append(audit.append(session, actor="local:t", action="t.act", target=f"t/{i}"))
    return made


def _rows(db: Database) -> list[AuditRecord]:
    with db.read() as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


def _checkpoints(db: Database) -> list[AuditCheckpoint]:
    with db.read() as session:
        return list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))


def _verify(db: Database, key: Key | None, signer: Signer, **kw: object) -> ChainReport:
    with db.read() as session:
        return verify_chain(session, key, public_keys=signer.public_keys, **kw)  # type: ignore[arg-type]


def _cp(**fields: object) -> AuditCheckpoint:
    values: dict[str, object] = {
        "id": 7,
        "records": 3,
        "head_hash": "ab" * 32,
        "legacy_records": 1,
        "created_at": WHEN,
        "scheme": SCHEME,
        "mac": "cd" * 32,
        "key_id": KEY_ID,
        "signature": b"\x01\x02",
        "tsa_token": b"\x03",
        "tsa_time": WHEN + timedelta(seconds=1),
    }
    values.update(fields)
    return AuditCheckpoint(**values)


def _genuine(signer: Signer, key: Key, **fields: object) -> AuditCheckpoint:
    """A checkpoint (not stored) MACed, signed and time-stamped like make_checkpoint's."""
    cp = _cp(**fields)
    body = checkpoint_body(
        records=cp.records,
        head_hash=cp.head_hash,
        legacy_records=cp.legacy_records,
        created_at=cp.created_at,
        scheme=cp.scheme,
    )
    cp.mac = key.mac(body).hex()
    cp.signature = signer.sign(body)
    cp.tsa_token = _token(cp.signature)
    return cp


# --- pure functions -----------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["名", None]}) == '{"a":["名",null],"b":1}'.encode()


def test_checkpoint_body_bytes() -> None:
    body = checkpoint_body(
        records=5, head_hash="ff", legacy_records=2, created_at=WHEN, scheme=SCHEME
    )
    assert json.loads(body) == {
        "type": "govtrust audit checkpoint",
        "records": 5,
        "head_hash": "ff",
        "legacy_records": 2,
        "created_at": "2026-03-04T05:06:07.000000+00:00",
        "scheme": SCHEME,
    }
    assert body == canonical_json(json.loads(body))


def test_record_hash_needs_the_key_of_its_scheme() -> None:
    fields = {
        "seq": 1,
        "recorded_at": WHEN,
        "actor": "a",
        "action": "b",
        "target": "c",
        "outcome": "ok",
        "details": "{}",
        "prev_hash": GENESIS_HASH,
    }
    for key in (None, Key("hmac-sha256/v9")):
        with pytest.raises(ValueError, match=r"^no chain key for scheme 'hmac-sha256/test'$"):
            record_hash(key, SCHEME, **fields)  # type: ignore[arg-type]
    assert len(record_hash(Key(), SCHEME, **fields)) == 64  # type: ignore[arg-type]


def test_next_link_of_each_head() -> None:
    key = Key()
    assert next_link(None, None) == (1, GENESIS_HASH, LEGACY_SCHEME)
    assert next_link(None, key) == (1, GENESIS_HASH, SCHEME)
    assert next_link((4, "aa", LEGACY_SCHEME), None) == (5, "aa", LEGACY_SCHEME)
    assert next_link((4, "aa", LEGACY_SCHEME), key) == (5, "aa", SCHEME)
    assert next_link(("9", "bb", "other"), key) == (10, "bb", SCHEME)
    with pytest.raises(FailedPrecondition) as caught:
        next_link((4, "aa", SCHEME), None)
    assert caught.value.message == "the audit chain is keyed and this process has no chain key"


def test_checkpoint_to_and_from_json() -> None:
    cp = _cp(created_at=WHEN.replace(tzinfo=None))  # SQLite returns naive UTC
    value = checkpoint_to_json(cp)
    assert value == {
        "id": 7,
        "records": 3,
        "head_hash": "ab" * 32,
        "legacy_records": 1,
        "created_at": "2026-03-04T05:06:07.000000+00:00",
        "scheme": SCHEME,
        "mac": "cd" * 32,
        "key_id": KEY_ID,
        "signature": "0102",
        "tsa_token": "03",
        "tsa_time": "2026-03-04T05:06:08+00:00",
    }
    back = checkpoint_from_json(json.loads(json.dumps(value)))
    assert checkpoint_to_json(back) == value
    assert (back.id, back.records, back.legacy_records) == (7, 3, 1)
    assert (back.head_hash, back.scheme, back.mac, back.key_id) == (
        "ab" * 32,
        SCHEME,
        "cd" * 32,
        KEY_ID,
    )
    assert (back.signature, back.tsa_token) == (b"\x01\x02", b"\x03")
    assert back.created_at == WHEN and back.tsa_time == WHEN + timedelta(seconds=1)
    # numbers written as strings are read as numbers
    loose = checkpoint_from_json({**value, "id": "8", "records": "4", "legacy_records": "0"})
    assert (loose.id, loose.records, loose.legacy_records) == (8, 4, 0)
    for name in value:
        with pytest.raises(KeyError):
            checkpoint_from_json({k: v for k, v in value.items() if k != name})


def test_checkpoint_problem_names_each_failure() -> None:
    key, signer = Key(), Signer()
    cp = _genuine(signer, key)
    calls: list[tuple[bytes, bytes]] = []

    def tokens(token: bytes, signature: bytes) -> str | None:
        calls.append((token, signature))
        return None

    assert checkpoint_problem(cp, key, signer.public_keys) is None
    assert checkpoint_problem(cp, key, signer.public_keys, tokens) is None
    assert calls == [(cp.tsa_token, cp.signature)]
    assert checkpoint_problem(cp, key, signer.public_keys, lambda t, s: "bad CA") == (
        "its time-stamp is not our TSA's (bad CA)"
    )
    held = f"it is keyed with {SCHEME}, which this process does not hold"
    assert checkpoint_problem(cp, None, signer.public_keys) == held
    assert checkpoint_problem(cp, Key("hmac-sha256/v9"), signer.public_keys) == held
    assert checkpoint_problem(cp, Key(secret=b"x" * 32), signer.public_keys) == (
        "its MAC fails against the key"
    )
    assert checkpoint_problem(cp, key, None) == "no key store to check its signature"
    assert checkpoint_problem(cp, key, Signer().public_keys) == "its signature does not verify"
    unknown = checkpoint_problem(_genuine(signer, key, key_id="nope"), key, signer.public_keys)
    assert unknown == "its signing key nope is unknown ('nope')"
    ed = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert (
        checkpoint_problem(cp, key, lambda kid: ed) == f"its signing key {KEY_ID} is not an EC key"
    )
    not_over = "its time-stamp token is not over its signature"
    for token in (_token(b"another"), _token(cp.signature, "sha1"), b"\x30\x00", b""):
        other = _genuine(signer, key)
        other.tsa_token = token
        assert checkpoint_problem(other, key, signer.public_keys) == not_over


# --- appends and checkpoints in a database --------------------------------------------------------


def test_append_fields_and_defaults(database: Database) -> None:
    key = Key()
    audit.install_chain_key(database, key)
    assert audit.chain_key(database) is key
    before = datetime.now(UTC)
    first, second = _append(database, 2)
    after = datetime.now(UTC)
    rows = _rows(database)
    assert [(r.seq, r.prev_hash, r.scheme) for r in rows] == [
        (1, GENESIS_HASH, SCHEME),
        (2, first.hash, SCHEME),
    ]
    assert (rows[0].outcome, rows[0].details, rows[0].actor) == ("ok", "{}", "local:t")
    assert before <= first.recorded_at <= after and first.recorded_at.tzinfo is not None
    assert rows[1].hash == second.hash
    with database.transaction() as session:
        made = audit.append(
            session, actor="a", action="b", target="c", outcome="denied", details={"z": 1, "a": 2}
        )
    assert (made.outcome, made.details) == ("denied", '{"a":2,"z":1}')
    assert _verify(database, key, Signer()) == ChainReport(3)


def test_latest_checkpoint_most_records_then_newest(database: Database) -> None:
    with database.transaction() as session:
        assert latest_checkpoint(session) is None
        for records in (5, 9, 9, 2):
            session.add(_cp(id=None, records=records))
    with database.read() as session:
        latest = latest_checkpoint(session)
        assert latest is not None and (latest.records, latest.id) == (9, 3)


def test_make_checkpoint_needs_a_key_and_a_new_head(database: Database) -> None:
    signer = Signer()
    with unchanged(database, None), pytest.raises(FailedPrecondition) as caught:
        make_checkpoint(database, signer.checkpoint_signer())
    assert caught.value.message == "an audit checkpoint needs the chain key"
    assert signer.signed == [] and signer.stamped == []
    key = Key()
    audit.install_chain_key(database, key)
    assert make_checkpoint(database, signer.checkpoint_signer()) is None  # empty chain
    _append(database, 2)
    before = datetime.now(UTC)
    cp = make_checkpoint(database, signer.checkpoint_signer())
    after = datetime.now(UTC)
    assert cp is not None
    head = _rows(database)[-1]
    assert (cp.records, cp.head_hash, cp.legacy_records, cp.scheme, cp.key_id) == (
        2,
        head.hash,
        0,
        SCHEME,
        KEY_ID,
    )
    assert before <= cp.created_at <= after
    body = checkpoint_body(
        records=2, head_hash=head.hash, legacy_records=0, created_at=cp.created_at, scheme=SCHEME
    )
    assert signer.signed == [body] and signer.stamped == [cp.signature]
    assert cp.mac == hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert (cp.tsa_token, cp.tsa_time) == (_token(cp.signature), WHEN)
    assert checkpoint_problem(cp, key, signer.public_keys) is None
    stored = _checkpoints(database)
    assert [(c.records, c.head_hash, c.mac, c.signature) for c in stored] == [
        (2, head.hash, cp.mac, cp.signature)
    ]
    assert make_checkpoint(database, signer.checkpoint_signer()) is None  # head not moved
    assert len(_checkpoints(database)) == 1 and len(signer.signed) == 1
    _append(database, 1)
    later = make_checkpoint(database, signer.checkpoint_signer())
    assert later is not None and later.records == 3 and len(_checkpoints(database)) == 2


def test_make_checkpoint_counts_the_unkeyed_prefix(database: Database) -> None:
    """Unkeyed records appended after a checkpoint that had only unkeyed ones still count."""
    signer, key = Signer(), Key()
    keyed = Database(database.url)
    try:
        audit.install_chain_key(keyed, key)
        _append(database, 3)  # no key on ``database``: the legacy scheme
        cp = make_checkpoint(keyed, signer.checkpoint_signer())
        assert cp is not None and (cp.records, cp.legacy_records) == (3, 3)
        _append(database, 2)
        cp = make_checkpoint(keyed, signer.checkpoint_signer())
        assert cp is not None and (cp.records, cp.legacy_records) == (5, 5)
        _append(keyed, 2)
        cp = make_checkpoint(keyed, signer.checkpoint_signer())
        assert cp is not None and (cp.records, cp.legacy_records) == (7, 5)
        _append(keyed, 1)
        cp = make_checkpoint(keyed, signer.checkpoint_signer())
        assert cp is not None and (cp.records, cp.legacy_records) == (8, 5)
        report = _verify(database, key, signer)
        assert report == ChainReport(8, legacy_records=5) and report.ok
        assert report.checkpoint is not None and report.checkpoint.id == cp.id
    finally:
        keyed.dispose()


def test_make_checkpoint_legacy_count_stops_at_the_head(database: Database) -> None:
    """The legacy count is of records up to the head: none when the chain is keyed from 1."""
    signer, key = Signer(), Key()
    audit.install_chain_key(database, key)
    _append(database, 2)
    cp = make_checkpoint(database, signer.checkpoint_signer())
    assert cp is not None and cp.legacy_records == 0


# --- verification ---------------------------------------------------------------------------------


def test_verify_reports_a_forged_checkpoint_with_its_id(database: Database) -> None:
    signer, key = Signer(), Key()
    audit.install_chain_key(database, key)
    _append(database, 2)
    stored = make_checkpoint(database, signer.checkpoint_signer())
    assert stored is not None and _verify(database, key, signer).ok
    forged = _genuine(signer, Key(secret=b"y" * 32), id=99, records=2)
    report = _verify(database, key, signer, external=[forged])
    assert report == ChainReport(
        0,
        None,
        "checkpoint 99 is not genuine: its MAC fails against the key",
        Finding.FORGED_CHECKPOINT,
    )
    assert report.checkpoint is forged and not report.ok
    report = _verify(database, key, signer, tokens=lambda t, s: "no")
    assert (
        report.reason
        == f"checkpoint {stored.id} is not genuine: its time-stamp is not our TSA's (no)"
    )


def test_verify_each_finding_with_its_fields(database: Database) -> None:
    signer, key = Signer(), Key()
    _append(database, 2)  # legacy prefix
    audit.install_chain_key(database, key)
    _append(database, 3)
    assert _verify(database, key, signer) == ChainReport(5, legacy_records=2)
    # a keyed record read without the key, or with another scheme's key
    unheld = "keyed with hmac-sha256/test, which this process does not hold"
    for other in (None, Key("hmac-sha256/v9")):
        assert _verify(database, other, signer) == ChainReport(2, 3, unheld, Finding.REWRITTEN, 2)
    # a legacy record edited
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(actor="x"))
    assert _verify(database, key, signer) == ChainReport(
        1, 2, "content does not match its hash", Finding.EDITED, 1
    )
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2).values(actor="local:t"))
    # a keyed record edited
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 4).values(target="x"))
    assert _verify(database, key, signer) == ChainReport(
        3, 4, "its MAC fails against the key", Finding.REWRITTEN, 2
    )
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 4).values(target="t/1"))
    # a broken link
    with database.transaction() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 5).values(prev_hash="0" * 64))
    assert _verify(database, key, signer) == ChainReport(
        4, 5, "previous-hash link does not match", Finding.EDITED, 2
    )
    # the first record deleted
    with database.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 1))
    assert _verify(database, key, signer) == ChainReport(
        0, 1, "record 1 is missing", Finding.MISSING
    )


def test_verify_against_checkpoints(database: Database) -> None:
    signer, key = Signer(), Key()
    _append(database, 2)  # legacy prefix
    audit.install_chain_key(database, key)
    _append(database, 2)
    first = make_checkpoint(database, signer.checkpoint_signer())
    assert first is not None and first.legacy_records == 2
    _append(database, 1)
    rows = _rows(database)
    # Two external checkpoints of the same head: the later one is the latest.
    early = _genuine(signer, key, id=50, records=5, head_hash=rows[4].hash, legacy_records=2)
    late = _genuine(
        signer,
        key,
        id=40,
        records=5,
        head_hash=rows[4].hash,
        legacy_records=2,
        created_at=WHEN + timedelta(hours=1),
    )
    report = _verify(database, key, signer, external=[early, late])
    assert report == ChainReport(5, legacy_records=2) and report.checkpoint is late
    report = _verify(database, key, signer, external=[late, early])
    assert report.checkpoint is late
    # a checkpoint of a head that is not the chain's
    other = _genuine(signer, key, id=61, records=3, head_hash="e" * 64, legacy_records=2)
    report = _verify(database, key, signer, external=[other])
    assert report == ChainReport(
        2,
        3,
        "record 3 differs from the head of checkpoint 61 (2026-03-04 05:06:07 UTC)",
        Finding.TRUNCATED,
        2,
    )
    assert report.checkpoint is other
    # a checkpoint beyond the chain's end
    beyond = _genuine(signer, key, id=62, records=6, head_hash="e" * 64, legacy_records=2)
    report = _verify(database, key, signer, external=[beyond])
    assert report == ChainReport(
        5,
        6,
        "the chain ends at record 5 but checkpoint 62 (2026-03-04 05:06:07 UTC) covers 6",
        Finding.TRUNCATED,
        2,
    )
    assert report.checkpoint is beyond
    # a checkpoint saying the unkeyed prefix was shorter: record 2 reads as a rewrite
    shorter = _genuine(signer, key, id=63, records=5, head_hash=rows[4].hash, legacy_records=1)
    report = _verify(database, key, signer, external=[shorter])
    assert report == ChainReport(
        1, 2, "an unkeyed record where the chain is keyed", Finding.REWRITTEN, 1
    )
    assert report.checkpoint is shorter


def test_an_unkeyed_record_after_keyed_ones_is_a_rewrite(database: Database) -> None:
    signer, key = Signer(), Key()
    audit.install_chain_key(database, key)
    _append(database, 2)
    with database.transaction() as session:  # the head relabelled as unkeyed
        session.execute(
            update(AuditRecord).where(AuditRecord.seq == 2).values(scheme=LEGACY_SCHEME)
        )
    report = _verify(database, key, signer)
    assert report == ChainReport(
        1, 2, "an unkeyed record where the chain is keyed", Finding.REWRITTEN
    )
    assert report.checkpoint is None


def test_a_record_restored_verbatim_is_walked_in_seq_order(database: Database) -> None:
    """The walk follows ``seq``, not the table's storage order: a record deleted and inserted
    again unchanged (a restore from a backup) leaves the chain intact."""
    key = Key()
    audit.install_chain_key(database, key)
    _append(database, 4)
    saved = _rows(database)[1]
    with database.transaction() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 2))
    with database.transaction() as session:
        session.add(
            AuditRecord(
                **{c: getattr(saved, c) for c in AuditRecord.__table__.columns.keys()}  # noqa: SIM118
            )
        )
    assert _verify(database, key, Signer()) == ChainReport(4)
