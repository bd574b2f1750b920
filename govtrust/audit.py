"""The append-only, keyed and checkpointed audit chain.

Every state change writes one record in the same transaction as the change. Each record holds
the digest of the previous one, so deleting, reordering or editing a record breaks the chain at
that point. Records are keyed: their digest is an HMAC-SHA256 under the service's chain key
(``scheme`` names the key version; the key lives in :mod:`hsm.audit_key` and only its MAC
function reaches this module), so rewriting records and recomputing every digest after them
needs the key. Records written before the chain was keyed (migration 0010) keep the plain
SHA-256 scheme; they form a prefix, and an unkeyed record after a keyed one is a rewrite.

Checkpoints (:class:`AuditCheckpoint`, a separate table) record the head (record count, head
digest, time): MACed with the chain key, signed by a key-store key and time-stamped by our TSA.
:func:`verify_chain` reports an edit or deletion in the middle, a rewrite (a MAC that fails
against the key) and a truncation (a chain shorter than, or a head different from, a checkpoint).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from govtrust.db import Base, Database, as_utc
from govtrust.errors import FailedPrecondition
from govtrust.lease import Fence
from govtrust.principal import Principal

GENESIS_HASH = "0" * 64
PG_AUDIT_LOCK = 0x6F7654_A0D1  # advisory lock key serialising appends on PostgreSQL
CHAIN_LOCK_IDLE_SECONDS = 5
"""How long a PostgreSQL transaction holding the chain's lock may sit idle (waiting for its
client's next statement) before the server ends its session and so frees the lock. Every
audited write of the cluster queues behind that lock, and a holder's next statement comes
within milliseconds (its records are computed, not waited for), so the session-wide bound
(``idle_in_transaction_session_timeout``, 60 s: :func:`govtrust.db.postgresql_connect_args`)
is far too long here: a host cut off from the network between taking the lock and its COMMIT
stopped every replica's audited writes until the server noticed — for a 20 s partition, the
whole partition and seconds after it (the cluster soak, docs/scaling.md)."""
PG_CHAIN_LOCK_TERMS = (
    f"pg_advisory_xact_lock({PG_AUDIT_LOCK}), set_config('idle_in_transaction_session_timeout',"
    f" '{CHAIN_LOCK_IDLE_SECONDS * 1000}', true)"
)
"""Select-list terms taking the chain's lock for the rest of the transaction and bounding, for
as long, how long it may idle (:data:`CHAIN_LOCK_IDLE_SECONDS`; ``set_config(..., true)`` is
``SET LOCAL``): for a writer that takes the lock in a statement of its own (``RETURNING``)."""
PG_CHAIN_LOCK_SQL = f"SELECT {PG_CHAIN_LOCK_TERMS}"
"""Take the chain's lock on PostgreSQL (see :data:`PG_CHAIN_LOCK_TERMS`); every writer of the
chain takes it this way."""
LEGACY_SCHEME = "sha256"  # records written before the chain was keyed
_KEY_INFO = "govtrust.audit.chain_key"
CLAIM_DETAIL = "request_claim"  # the details key naming the idempotency claim a record belongs to
_claim: ContextVar[str | None] = ContextVar("govtrust_audit_request_claim", default=None)


def bind_claim(token: str | None) -> Token[str | None]:
    """Mark every record this context appends with the idempotency claim ``token``
    (:mod:`govtrust.idempotency`): the record of an effect, written in the effect's transaction,
    is then the proof that a claim took effect. Returns the token to :func:`reset_claim` with."""
    return _claim.set(token)


def reset_claim(previous: Token[str | None]) -> None:
    """Undo :func:`bind_claim`."""
    _claim.reset(previous)


def with_claim(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` with the bound claim added (for writers that build records in another thread,
    such as the CA group commit: call it in the caller's thread); unchanged when none is bound."""
    token = _claim.get()
    return details if token is None else {**details, CLAIM_DETAIL: token}


class ChainKey(Protocol):
    """The chain key as this module sees it: a scheme name and a MAC function (see hsm)."""

    @property
    def scheme(self) -> str: ...

    def mac(self, data: bytes) -> bytes: ...


def install_chain_key(db: Database, key: ChainKey) -> None:
    """Key every record appended through ``db`` (its sessions and the CA's group commit)."""
    db.session_info[_KEY_INFO] = key


def chain_key(db: Database) -> ChainKey | None:
    """The chain key installed on ``db``, if any."""
    key: ChainKey | None = db.session_info.get(_KEY_INFO)
    return key


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
    # How ``hash`` was made: LEGACY_SCHEME (plain SHA-256) or the chain key's scheme.
    scheme: Mapped[str] = mapped_column(String(32), server_default=LEGACY_SCHEME)


class AuditCheckpoint(Base):
    """A signed, time-stamped head of the chain: the first ``records`` records end in
    ``head_hash``. Rows are only ever inserted."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    records: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    legacy_records: Mapped[int] = mapped_column(BigInteger)  # the unkeyed prefix's length
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    scheme: Mapped[str] = mapped_column(String(32))  # chain key that made ``mac``
    mac: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))  # key-store key that made ``signature``
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    tsa_token: Mapped[bytes] = mapped_column(LargeBinary)  # RFC 3161 over SHA-256(signature)
    tsa_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(
    key: ChainKey | None,
    scheme: str,
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
    """The digest of a record (the one function every writer and the verifier use).

    The canonical JSON of the record's fields, including the previous digest: plain SHA-256 for
    :data:`LEGACY_SCHEME`, else HMAC-SHA256 under ``key`` with the scheme itself in the body.
    ``key`` must be the key of ``scheme`` (``ValueError`` otherwise).
    """
    body: dict[str, Any] = {
        "seq": seq,
        "recorded_at": as_utc(recorded_at).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "details": details,
        "prev_hash": prev_hash,
    }
    if scheme == LEGACY_SCHEME:
        return hashlib.sha256(canonical_json(body)).hexdigest()
    if key is None or key.scheme != scheme:
        raise ValueError(f"no chain key for scheme {scheme!r}")
    body["scheme"] = scheme
    return key.mac(canonical_json(body)).hex()


HEAD_SQL = "SELECT seq, hash, scheme FROM audit_log ORDER BY seq DESC LIMIT 1"


def next_link(head: Sequence[Any] | None, key: ChainKey | None) -> tuple[int, str, str]:
    """(seq, prev_hash, scheme) of the record after ``head`` (a ``HEAD_SQL`` row, or None).

    A process without the chain key may not extend a keyed chain: its records would read as a
    rewrite. That is refused here rather than discovered at the next verification.
    """
    if head is None:
        seq, prev_hash, head_scheme = 0, GENESIS_HASH, LEGACY_SCHEME
    else:
        seq, prev_hash, head_scheme = int(head[0]), str(head[1]), str(head[2])
    if key is None and head_scheme != LEGACY_SCHEME:
        raise FailedPrecondition("the audit chain is keyed and this process has no chain key")
    return seq + 1, prev_hash, key.scheme if key is not None else LEGACY_SCHEME


AUDIT_COLUMNS = (
    "seq",
    "recorded_at",
    "actor",
    "action",
    "target",
    "outcome",
    "details",
    "prev_hash",
    "hash",
    "scheme",
)
# The INSERT of one record with ``:name`` parameters, for driver-level writers (see FastSql).
INSERT_SQL = (
    f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)})"  # noqa: S608 - constant names
    f" VALUES ({', '.join(':' + c for c in AUDIT_COLUMNS)})"
)


@dataclass(frozen=True)
class Entry:
    """What a record says, before it is chained: ``details`` is canonical JSON text."""

    actor: str
    action: str
    target: str
    details: str
    outcome: str = "ok"


def chained_records(
    head: Sequence[Any] | None,
    key: ChainKey | None,
    recorded_at: datetime,
    entries: Sequence[Entry],
) -> list[dict[str, Any]]:
    """The rows (:data:`AUDIT_COLUMNS`) of ``entries`` chained after ``head`` (a
    :data:`HEAD_SQL` row, or None), for writers that insert without :func:`append`.

    The caller holds the chain's lock (SQLite's write lock, or :data:`PG_AUDIT_LOCK` on
    PostgreSQL) from reading ``head`` until commit.
    """
    seq, prev_hash, scheme = next_link(head, key)
    records = []
    token = _claim.get()
    for entry in entries:
        if token is not None and token not in entry.details:
            marked = {**json.loads(entry.details), CLAIM_DETAIL: token}
            entry = replace(entry, details=canonical_json(marked).decode())
        digest = record_hash(
            key,
            scheme,
            seq=seq,
            recorded_at=recorded_at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            outcome=entry.outcome,
            details=entry.details,
            prev_hash=prev_hash,
        )
        records.append(
            {
                "seq": seq,
                "recorded_at": recorded_at,
                "actor": entry.actor,
                "action": entry.action,
                "target": entry.target,
                "outcome": entry.outcome,
                "details": entry.details,
                "prev_hash": prev_hash,
                "hash": digest,
                "scheme": scheme,
            }
        )
        seq, prev_hash = seq + 1, digest
    return records


def lock_chain(session: Session) -> None:
    """Hold the chain's lock until the caller's transaction ends (PostgreSQL: the advisory lock,
    with :data:`CHAIN_LOCK_IDLE_SECONDS` as the transaction's idle bound; SQLite's write
    transaction holds it from BEGIN)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(PG_CHAIN_LOCK_SQL))


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
    lock_chain(session)
    key: ChainKey | None = session.info.get(_KEY_INFO)
    head = session.execute(text(HEAD_SQL)).first()
    entry = Entry(actor, action, target, canonical_json(details or {}).decode(), outcome)
    record = AuditRecord(**chained_records(head, key, datetime.now(UTC), [entry])[0])
    session.add(record)
    session.flush()
    return record


def append_many(session: Session, entries: Sequence[Entry]) -> list[int]:
    """Append ``entries`` inside the caller's write transaction, chained in order, with one
    lock, one head read and one multi-row INSERT (bulk writers: a licence import chunk); their
    sequence numbers. The same lock rules as :func:`append`."""
    if not entries:
        return []
    lock_chain(session)
    session.flush()  # records added through the ORM come first
    key: ChainKey | None = session.info.get(_KEY_INFO)
    head = session.execute(text(HEAD_SQL)).first()
    records = chained_records(head, key, datetime.now(UTC), entries)
    session.execute(text(INSERT_SQL), records)
    return [int(r["seq"]) for r in records]


@dataclass(frozen=True)
class RecordView:
    """An audit record as other packages read it (:func:`records_about`)."""

    seq: int
    recorded_at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]


def records_about(
    session: Session,
    targets: Sequence[str],
    *,
    actions: Sequence[str] = (),
    action_prefixes: Sequence[str] = (),
    limit: int = 500,
) -> list[RecordView]:
    """The newest records (at most ``limit``, newest first) whose target is one of ``targets``
    and whose action is one of ``actions`` or starts with one of ``action_prefixes`` (any action
    when neither is given): how an owner package reads what the chain says about its objects."""
    if not targets:
        return []
    query = select(AuditRecord).where(AuditRecord.target.in_(list(targets)))
    wanted: list[ColumnElement[bool]] = [AuditRecord.action.in_(list(actions))] if actions else []
    wanted += [AuditRecord.action.startswith(prefix) for prefix in action_prefixes]
    if wanted:
        query = query.where(or_(*wanted))
    rows = session.scalars(query.order_by(AuditRecord.seq.desc()).limit(limit))
    return [_view(r) for r in rows]


def _view(r: AuditRecord) -> RecordView:
    return RecordView(
        r.seq,
        as_utc(r.recorded_at),
        r.actor,
        r.action,
        r.target,
        r.outcome,
        json.loads(r.details) if r.details else {},
    )


def record_at(session: Session, seq: int) -> RecordView | None:
    """The record with sequence number ``seq`` (None when there is none): how an owner package
    reads back what it recorded of one effect (:attr:`ClaimEffect.seq`)."""
    r = session.get(AuditRecord, seq)
    return None if r is None else _view(r)


def head_seq(session: Session) -> int:
    """The sequence number of the newest record (0 for an empty chain)."""
    head = session.execute(text(HEAD_SQL)).first()
    return int(head[0]) if head is not None else 0


def recent_failures(session: Session, limit: int = 20, window: int = 10_000) -> list[AuditRecord]:
    """The newest records whose outcome is not ``ok`` (refusals, failures) among the last
    ``window`` records, newest first (a bounded look: the primary key, no scan of the chain)."""
    first = head_seq(session) - window
    return list(
        session.scalars(
            select(AuditRecord)
            .where(AuditRecord.seq > first, AuditRecord.outcome != "ok")
            .order_by(AuditRecord.seq.desc())
            .limit(limit)
        )
    )


def claim_recorded(session: Session, token: str, after_seq: int) -> bool:
    """Whether a record after ``after_seq`` carries the idempotency claim ``token``
    (:func:`bind_claim`): whether the effect of the claimed call was committed. Scans only the
    records written since the claim was taken."""
    found = session.execute(
        text("SELECT 1 FROM audit_log WHERE seq > :after AND details LIKE :pattern LIMIT 1"),
        {"after": after_seq, "pattern": f"%{token}%"},
    ).first()
    return found is not None


@dataclass(frozen=True)
class ClaimEffect:
    """One effect a claimed call recorded (:func:`claim_effects`): the record's action and
    outcome, and the object it acted on (a batched record's own entry for a batch member);
    ``seq`` is the record's sequence number (the owning package may have noted it next to the
    object, e.g. a seal event's ``audit_seq``)."""

    action: str
    target: str
    outcome: str
    seq: int = 0


def claim_effects(session: Session, token: str, after_seq: int) -> list[ClaimEffect]:
    """What the idempotency claim ``token`` (:func:`bind_claim`) recorded after ``after_seq``,
    oldest first: one effect per record marked with it, and one per entry of a batched record
    (a list of objects under one details key, each with its ``target``) marked with it."""
    rows = session.execute(
        text(
            "SELECT seq, action, target, outcome, details FROM audit_log"
            " WHERE seq > :after AND details LIKE :pattern ORDER BY seq"
        ),
        {"after": after_seq, "pattern": f"%{token}%"},
    ).all()
    effects = []
    for seq, action, target, outcome, raw in rows:
        details = json.loads(raw) if raw else {}
        if details.get(CLAIM_DETAIL) == token:
            effects.append(ClaimEffect(action, target, outcome, int(seq)))
        for value in details.values():
            if isinstance(value, list):
                effects += [
                    ClaimEffect(action, str(item["target"]), outcome, int(seq))
                    for item in value
                    if isinstance(item, dict)
                    and item.get(CLAIM_DETAIL) == token
                    and "target" in item
                ]
    return effects


# --- checkpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointSigner:
    """How a checkpoint is signed and time-stamped (wired by the server and the CLI).

    ``sign`` signs the checkpoint body with the key-store key ``key_id`` (ECDSA P-256 with
    SHA-256); ``timestamp`` gets an RFC 3161 token over SHA-256 of that signature from our TSA
    and returns the token DER and its genTime.
    """

    key_id: str
    sign: Callable[[bytes], bytes]
    timestamp: Callable[[bytes], tuple[bytes, datetime]]


def checkpoint_body(
    *, records: int, head_hash: str, legacy_records: int, created_at: datetime, scheme: str
) -> bytes:
    """The canonical bytes a checkpoint's MAC and signature cover."""
    return canonical_json(
        {
            "type": "govtrust audit checkpoint",
            "records": records,
            "head_hash": head_hash,
            "legacy_records": legacy_records,
            "created_at": as_utc(created_at).isoformat(timespec="microseconds"),
            "scheme": scheme,
        }
    )


def _body_of(checkpoint: AuditCheckpoint) -> bytes:
    return checkpoint_body(
        records=checkpoint.records,
        head_hash=checkpoint.head_hash,
        legacy_records=checkpoint.legacy_records,
        created_at=checkpoint.created_at,
        scheme=checkpoint.scheme,
    )


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The checkpoint covering the most records (the newest among equals)."""
    return session.scalars(
        select(AuditCheckpoint)
        .order_by(AuditCheckpoint.records.desc(), AuditCheckpoint.id.desc())
        .limit(1)
    ).first()


def make_checkpoint(
    db: Database, signer: CheckpointSigner, fence: Fence | None = None
) -> AuditCheckpoint | None:
    """Checkpoint the current head: MAC, signature and time-stamp, stored in its own table.

    Returns None when the chain is empty or its head is already the latest checkpoint's (a
    periodic job on an idle service adds nothing). Needs the chain key on ``db``. ``fence``:
    the cluster job's lease, checked in the transaction that stores the checkpoint.
    """
    key = chain_key(db)
    if key is None:
        raise FailedPrecondition("an audit checkpoint needs the chain key")
    if fence is not None:  # a stale leader stops before it signs or asks for a time-stamp
        with db.transaction() as session:
            fence.check(session)
    with db.read() as session:
        head = session.execute(text(HEAD_SQL)).first()
        if head is None:
            return None
        records, head_hash = int(head[0]), str(head[1])
        previous = latest_checkpoint(session)
        if previous is not None and previous.records == records:
            return None
        if previous is not None and previous.legacy_records < previous.records:
            legacy = previous.legacy_records  # keyed records already followed the prefix
        else:
            legacy = int(
                session.scalar(
                    select(AuditRecord.seq)
                    .where(AuditRecord.scheme == LEGACY_SCHEME, AuditRecord.seq <= records)
                    .order_by(AuditRecord.seq.desc())
                    .limit(1)
                )
                or 0
            )
    created_at = datetime.now(UTC)
    body = checkpoint_body(
        records=records,
        head_hash=head_hash,
        legacy_records=legacy,
        created_at=created_at,
        scheme=key.scheme,
    )
    signature = signer.sign(body)
    token, tsa_time = signer.timestamp(signature)
    checkpoint = AuditCheckpoint(
        records=records,
        head_hash=head_hash,
        legacy_records=legacy,
        created_at=created_at,
        scheme=key.scheme,
        mac=key.mac(body).hex(),
        key_id=signer.key_id,
        signature=signature,
        tsa_token=token,
        tsa_time=tsa_time,
    )
    with db.transaction() as session:
        if fence is not None:
            fence.check(session)
        session.add(checkpoint)
    return checkpoint


def checkpoint_to_json(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as JSON, to be kept away from the database (``audit checkpoint --out``)."""
    return {
        "id": checkpoint.id,
        "records": checkpoint.records,
        "head_hash": checkpoint.head_hash,
        "legacy_records": checkpoint.legacy_records,
        "created_at": as_utc(checkpoint.created_at).isoformat(timespec="microseconds"),
        "scheme": checkpoint.scheme,
        "mac": checkpoint.mac,
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature.hex(),
        "tsa_token": checkpoint.tsa_token.hex(),
        "tsa_time": as_utc(checkpoint.tsa_time).isoformat(),
    }


def checkpoint_from_json(value: dict[str, Any]) -> AuditCheckpoint:
    """The inverse of :func:`checkpoint_to_json` (``ValueError`` / ``KeyError`` if malformed)."""
    return AuditCheckpoint(
        id=int(value["id"]),
        records=int(value["records"]),
        head_hash=str(value["head_hash"]),
        legacy_records=int(value["legacy_records"]),
        created_at=datetime.fromisoformat(value["created_at"]),
        scheme=str(value["scheme"]),
        mac=str(value["mac"]),
        key_id=str(value["key_id"]),
        signature=bytes.fromhex(value["signature"]),
        tsa_token=bytes.fromhex(value["tsa_token"]),
        tsa_time=datetime.fromisoformat(value["tsa_time"]),
    )


# --- verification -------------------------------------------------------------------------------


class Finding(enum.StrEnum):
    """What :func:`verify_chain` found (the CLI maps each to its own exit code)."""

    INTACT = "intact"
    EDITED = "edited"  # a record's content or link does not match (unkeyed digest or link)
    MISSING = "missing"  # a record in the middle was deleted
    REWRITTEN = "rewritten"  # a record's MAC fails against the key (or a keyed record unkeyed)
    TRUNCATED = "truncated"  # shorter than, or a head different from, a checkpoint
    FORGED_CHECKPOINT = "forged-checkpoint"  # a checkpoint's MAC, signature or token fails


@dataclass(frozen=True)
class ChainReport:
    """Result of walking the chain: records checked, and the first problem found (if any)."""

    records: int
    broken_seq: int | None = None
    reason: str | None = None
    finding: Finding = Finding.INTACT
    legacy_records: int = 0
    checkpoint: AuditCheckpoint | None = field(default=None, compare=False)
    # where a bounded walk (``limit``) stopped with the chain intact so far; None when done
    resume: ChainPosition | None = None

    @property
    def ok(self) -> bool:
        return self.finding is Finding.INTACT

    @property
    def done(self) -> bool:
        """Whether the walk reached the head (or stopped at a problem)."""
        return self.resume is None


@dataclass(frozen=True)
class ChainPosition:
    """Where a bounded walk of the chain stopped: the next record to check and what the walk
    so far established (the link it must continue, the legacy prefix, whether keyed records
    were seen). Only meaningful to a caller that keeps it unforged (e.g. MACed)."""

    next_seq: int = 1
    prev_hash: str = GENESIS_HASH
    legacy: int = 0
    keyed_seen: bool = False


PublicKeys = Callable[[str], bytes]  # key id -> SubjectPublicKeyInfo DER
# (token DER, the signature it time-stamps) -> why the token is not our TSA's, or None
TokenCheck = Callable[[bytes, bytes], str | None]


def _walk(session: Session, first: int = 1, limit: int | None = None) -> Iterator[AuditRecord]:
    stmt = select(AuditRecord).order_by(AuditRecord.seq)
    if first > 1:
        stmt = stmt.where(AuditRecord.seq >= first)
    if limit is not None:
        stmt = stmt.limit(limit)
    yield from session.scalars(stmt.execution_options(yield_per=1000))


def _token_imprint(token_der: bytes) -> bytes | None:
    from asn1crypto import cms, tsp

    try:
        content = cms.ContentInfo.load(token_der)
        tst = tsp.TSTInfo.load(content["content"]["encap_content_info"]["content"].contents)
        imprint = tst["message_imprint"]
        if imprint["hash_algorithm"]["algorithm"].native != "sha256":
            return None
        value: bytes = imprint["hashed_message"].native
    except (ValueError, TypeError, KeyError):
        return None
    return value


def checkpoint_problem(
    checkpoint: AuditCheckpoint,
    key: ChainKey | None,
    public_keys: PublicKeys | None,
    tokens: TokenCheck | None = None,
) -> str | None:
    """Why ``checkpoint`` is not genuine (its MAC, signature or time-stamp), or None.

    Without ``tokens`` only the time-stamp's imprint is checked, not who signed the token."""
    body = _body_of(checkpoint)
    if key is None or key.scheme != checkpoint.scheme:
        return f"it is keyed with {checkpoint.scheme}, which this process does not hold"
    if not hmac.compare_digest(key.mac(body).hex(), checkpoint.mac):
        return "its MAC fails against the key"
    if public_keys is None:
        return "no key store to check its signature"
    try:
        public_key = serialization.load_der_public_key(public_keys(checkpoint.key_id))
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return f"its signing key {checkpoint.key_id} is not an EC key"
        public_key.verify(checkpoint.signature, body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "its signature does not verify"
    except Exception as exc:  # noqa: BLE001 - an unknown key is a failed check, named
        return f"its signing key {checkpoint.key_id} is unknown ({exc})"
    if _token_imprint(checkpoint.tsa_token) != hashlib.sha256(checkpoint.signature).digest():
        return "its time-stamp token is not over its signature"
    if tokens is not None:
        problem = tokens(checkpoint.tsa_token, checkpoint.signature)
        if problem is not None:
            return f"its time-stamp is not our TSA's ({problem})"
    return None


def verify_chain(
    session: Session,
    key: ChainKey | None = None,
    *,
    public_keys: PublicKeys | None = None,
    tokens: TokenCheck | None = None,
    external: Sequence[AuditCheckpoint] = (),
    start: ChainPosition | None = None,
    limit: int | None = None,
) -> ChainReport:
    """Recompute every digest and link, and hold the chain against every checkpoint.

    ``key`` checks keyed records and checkpoints' MACs; ``public_keys`` (the key store's) their
    signatures; ``tokens`` their time-stamps; ``external`` adds checkpoints kept outside the
    database. Reports the first
    problem: a forged checkpoint, an edit or deletion in the middle, a rewrite, a truncation.

    A long chain can be walked in bounded steps: ``limit`` records at most from ``start`` (the
    previous step's ``resume``); the report's ``records`` counts from the chain's start, and
    ``resume`` is set while records remain. Checkpoints are checked in the first step.
    """
    position = start or ChainPosition()
    checkpoints = [
        *session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)),
        *external,
    ]
    for cp in checkpoints if position.next_seq == 1 else ():
        problem = checkpoint_problem(cp, key, public_keys, tokens)
        if problem is not None:
            return ChainReport(
                0,
                None,
                f"checkpoint {cp.id} is not genuine: {problem}",
                Finding.FORGED_CHECKPOINT,
                checkpoint=cp,
            )
    latest = max(checkpoints, key=lambda c: (c.records, as_utc(c.created_at)), default=None)
    heads: dict[int, list[AuditCheckpoint]] = {}
    for cp in checkpoints:
        heads.setdefault(cp.records, []).append(cp)
    legacy_limit = latest.legacy_records if latest is not None else None
    expected_prev = position.prev_hash
    expected_seq = position.next_seq
    count = expected_seq - 1
    legacy = position.legacy
    keyed_seen = position.keyed_seen
    walked = 0

    def report(
        seq: int, reason: str, finding: Finding, cp: AuditCheckpoint | None = None
    ) -> ChainReport:
        return ChainReport(count, seq, reason, finding, legacy, cp)

    for record in _walk(session, expected_seq, limit):
        walked += 1
        seq = record.seq
        if seq != expected_seq:
            return report(expected_seq, f"record {expected_seq} is missing", Finding.MISSING)
        if record.prev_hash != expected_prev:
            return report(seq, "previous-hash link does not match", Finding.EDITED)
        if record.scheme == LEGACY_SCHEME:
            if keyed_seen or (legacy_limit is not None and seq > legacy_limit):
                return report(
                    seq, "an unkeyed record where the chain is keyed", Finding.REWRITTEN, latest
                )
        elif key is None or record.scheme != key.scheme:
            return report(
                seq,
                f"keyed with {record.scheme}, which this process does not hold",
                Finding.REWRITTEN,
            )
        recomputed = record_hash(
            key,
            record.scheme,
            seq=seq,
            recorded_at=record.recorded_at,
            actor=record.actor,
            action=record.action,
            target=record.target,
            outcome=record.outcome,
            details=record.details,
            prev_hash=record.prev_hash,
        )
        if not hmac.compare_digest(recomputed, record.hash):
            if record.scheme == LEGACY_SCHEME:
                return report(seq, "content does not match its hash", Finding.EDITED)
            return report(seq, "its MAC fails against the key", Finding.REWRITTEN)
        for cp in heads.get(seq, ()):
            if record.hash != cp.head_hash:
                return report(
                    seq,
                    f"record {seq} differs from the head of checkpoint {cp.id} "
                    f"({as_utc(cp.created_at):%Y-%m-%d %H:%M:%S} UTC)",
                    Finding.TRUNCATED,
                    cp,
                )
        if record.scheme == LEGACY_SCHEME:
            legacy += 1
        else:
            keyed_seen = True
        expected_prev = record.hash
        expected_seq += 1
        count += 1
    if limit is not None and walked == limit:
        resume = ChainPosition(expected_seq, expected_prev, legacy, keyed_seen)
        return ChainReport(count, legacy_records=legacy, checkpoint=latest, resume=resume)
    if latest is not None and count < latest.records:
        return report(
            count + 1,
            f"the chain ends at record {count} but checkpoint {latest.id} "
            f"({as_utc(latest.created_at):%Y-%m-%d %H:%M:%S} UTC) covers {latest.records}",
            Finding.TRUNCATED,
            latest,
        )
    return ChainReport(count, legacy_records=legacy, checkpoint=latest)


# --- the operators' view -------------------------------------------------------------------------

OPERATOR_ROLE = "ca-operator"  # who may see the chain's status and verify it on demand


@dataclass(frozen=True)
class Failure:
    """A recent record whose outcome was not ``ok``."""

    seq: int
    recorded_at: datetime
    actor: str
    action: str
    target: str
    outcome: str


@dataclass(frozen=True)
class ChainStatus:
    """The chain's head, its newest checkpoint and the recent refusals and failures."""

    records: int
    head_at: datetime | None
    checkpoint_records: int | None
    checkpoint_at: datetime | None
    failures: list[Failure]


def chain_status(db: Database, principal: Principal, failures: int = 20) -> ChainStatus:
    """The chain's status for an operator (``ca-operator``), without walking it."""
    principal.require_role(OPERATOR_ROLE)
    with db.read() as session:
        head = session.scalars(
            select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)
        ).first()
        checkpoint = latest_checkpoint(session)
        recent = [
            Failure(r.seq, as_utc(r.recorded_at), r.actor, r.action, r.target, r.outcome)
            for r in recent_failures(session, failures)
        ]
    return ChainStatus(
        head.seq if head is not None else 0,
        as_utc(head.recorded_at) if head is not None else None,
        checkpoint.records if checkpoint is not None else None,
        as_utc(checkpoint.created_at) if checkpoint is not None else None,
        recent,
    )


def start_verification(db: Database, principal: Principal) -> int:
    """Record that an operator (``ca-operator``) verifies the chain now; the head it will
    verify up to (the record written here included)."""
    principal.require_role(OPERATOR_ROLE)
    with db.transaction() as session:
        record = append(
            session,
            actor=principal.actor,
            action="audit.verify",
            target="audit-chain",
            details={"head": head_seq(session)},
        )
        return record.seq


def verify_step(
    db: Database,
    principal: Principal,
    start: ChainPosition | None,
    limit: int,
    *,
    public_keys: PublicKeys | None = None,
    tokens: TokenCheck | None = None,
) -> ChainReport:
    """One bounded step of an operator's (``ca-operator``) verification of the chain:
    :func:`verify_chain` over at most ``limit`` records from ``start``."""
    principal.require_role(OPERATOR_ROLE)
    with db.read() as session:
        return verify_chain(
            session,
            chain_key(db),
            public_keys=public_keys,
            tokens=tokens,
            start=start,
            limit=limit,
        )
