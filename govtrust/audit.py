"""The append-only, hash-chained audit log.

Every state change writes one record in the same transaction as the change. Each record holds
the SHA-256 of the previous record's canonical JSON, so deleting, reordering or editing any
record breaks the chain at that point; ``verify_chain`` names the first broken record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from govtrust.db import Base, as_utc

GENESIS_HASH = "0" * 64
PG_AUDIT_LOCK = 0x6F7654_A0D1  # advisory lock key serialising appends on PostgreSQL


class AuditRecord(Base):
    """One audit record. Rows are only ever inserted."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(128), index=True)
    target: Mapped[str] = mapped_column(String(256), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(
    *,
    seq: int,
    recorded_at: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    details: str,
    prev_hash: str,
) -> str:
    """SHA-256 over the canonical JSON of a record's fields, including the previous hash."""
    body = {
        "seq": seq,
        "recorded_at": as_utc(recorded_at).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append a record inside the caller's transaction.

    Callers must use a write transaction (``Database.transaction``): on SQLite it holds the
    write lock from BEGIN, on PostgreSQL an advisory lock taken here serialises appends until
    commit, so the chain never forks.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_AUDIT_LOCK})
    head = session.execute(
        select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
    recorded_at = datetime.now(UTC)
    details_json = canonical_json(details or {}).decode()
    record = AuditRecord(
        seq=seq,
        recorded_at=recorded_at,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        details=details_json,
        prev_hash=prev_hash,
        hash=record_hash(
            seq=seq,
            recorded_at=recorded_at,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            details=details_json,
            prev_hash=prev_hash,
        ),
    )
    session.add(record)
    session.flush()
    return record


@dataclass(frozen=True)
class ChainReport:
    """Result of walking the chain: how many records were checked and the first broken one."""

    records: int
    broken_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def _walk(session: Session) -> Iterator[AuditRecord]:
    yield from session.scalars(
        select(AuditRecord).order_by(AuditRecord.seq).execution_options(yield_per=1000)
    )


def verify_chain(session: Session) -> ChainReport:
    """Recompute every hash and link; report the first record that does not fit."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    for record in _walk(session):
        if record.seq != expected_seq:
            return ChainReport(count, expected_seq, f"record {expected_seq} is missing")
        if record.prev_hash != expected_prev:
            return ChainReport(count, record.seq, "previous-hash link does not match")
        recomputed = record_hash(
            seq=record.seq,
            recorded_at=record.recorded_at,
            actor=record.actor,
            action=record.action,
            target=record.target,
            outcome=record.outcome,
            details=record.details,
            prev_hash=record.prev_hash,
        )
        if recomputed != record.hash:
            return ChainReport(count, record.seq, "content does not match its hash")
        expected_prev = record.hash
        expected_seq += 1
        count += 1
    return ChainReport(count)
