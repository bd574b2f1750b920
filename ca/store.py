"""Group commit of issued certificates: many issuances, one durable transaction.

Issuances hand their finished rows — certificate, pre-produced OCSP response, audit entry — to the
process's :class:`GroupCommitter` (a :class:`ca.batch.BatchCommitter`). One committer thread per
process takes everything queued (up to ``max_batch``), writes it in ONE transaction (one multi-row
INSERT per table and one audit record per (actor, action)), commits, and reports each item done.
Each caller learns that its item is done only after the transaction holding its certificate
committed, so "issued" always means "stored" — durably on PostgreSQL with ``synchronous_commit=on``
(the production setting). The embedded SQLite database (development, single node) runs WAL with
``synchronous=NORMAL``: a commit survives a crash of the process but the last ones may be lost on
power loss or an OS crash. If a batch fails for a reason of its own (a constraint), its items are
retried one by one so that one bad item fails alone; if it fails because the database is gone
(after one retry on a fresh connection), the whole batch fails with that error at once.

If the connection is lost after COMMIT was sent, the outcome is unknown: the committer looks
the batch up (on PostgreSQL under the audit chain's lock, so that a commit the old backend is
still finishing is seen) and writes it again if it is not there. An outcome that cannot be
resolved (the database still unreachable) fails with :class:`CommitOutcomeUnknown`: the
certificate may exist, so nothing issued for it (a generated key) may be destroyed.

Callers either block (:meth:`GroupCommitter.submit`, for synchronous domain code) or hand over
a completion callback (:meth:`GroupCommitter.submit_nowait`): the gRPC adapter awaits the commit
on its event loop without holding a worker thread, so every issuance in flight in the process
joins the next batch instead of at most one per pool thread.

On PostgreSQL the batch is written on the driver connection in two round trips (psycopg
pipeline): ``pg_advisory_xact_lock`` (the audit chain's lock, see :mod:`govtrust.audit`) and the
chain head; then the INSERTs, the audit record(s) and COMMIT. SQLAlchemy's per-statement
machinery and ORM flush cost more CPU than PostgreSQL's own work for these statements. SQLite
keeps the SQLAlchemy Core path (one writer at a time anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, exc, insert, select, text, update

from ca.batch import BatchCommitter
from ca.models import CaCertificate, CaOcspResponse
from govtrust import audit
from govtrust.audit import AUDIT_COLUMNS, HEAD_SQL, PG_CHAIN_LOCK_SQL, AuditRecord, ChainKey
from govtrust.db import Database
from govtrust.errors import Unavailable
from govtrust.idempotency import HELD_CLAIMS_SQL, ClaimTakenOver, held_claims

log = logging.getLogger("govtrust.ca.store")

# How long the look-up after an unknown commit outcome waits for the audit chain's lock (held
# by the lost transaction until its backend has finished committing or rolling back).
LOOKUP_LOCK_TIMEOUT = "10s"


@dataclass(eq=False)
class PendingIssue:
    """One issued certificate waiting to be committed."""

    certificate: dict[str, Any]
    ocsp: dict[str, Any]
    actor: str
    action: str
    details: dict[str, Any]
    renewed_from: str | None = None
    done: bool = False
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    on_done: Callable[[PendingIssue], None] | None = None


_CERT_COLUMNS = tuple(c.key for c in cast(Table, CaCertificate.__table__).columns)
# Columns that are always NULL on a freshly issued certificate (left to their default).
_NULL_AT_ISSUANCE = frozenset(
    {
        "revoked_at",
        "revocation_reason",
        "invalidity_date",
        "status_comment",
        "resumed_at",
        "renewed_by",
        "paired_with",  # set by ca.kmc in its own transaction
        "escrow_key_id",
    }
)
_CERT_INSERT = tuple(c for c in _CERT_COLUMNS if c not in _NULL_AT_ISSUANCE)
_OCSP_COLUMNS = ("certificate_id", "der", "this_update", "next_update")


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """``INSERT INTO table (cols) VALUES (%s, ...)`` (psycopg style) for ``executemany``: in
    pipeline mode psycopg sends one Bind/Execute per row without waiting, and the statement
    text stays short and fixed (parsed once, prepared by the server after a few uses — a
    multi-row VALUES list costs more in psycopg's query parsing than it saves). Table and
    column names are this module's constants, never input."""
    values = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"  # noqa: S608


_CERT_SQL = _insert_sql("ca_certificates", _CERT_INSERT)
_OCSP_SQL = _insert_sql("ca_ocsp_responses", _OCSP_COLUMNS)
_AUDIT_SQL = _insert_sql("audit_log", AUDIT_COLUMNS)
_RENEWED_SQL = "UPDATE ca_certificates SET renewed_by = %s WHERE id = %s"
_STORED_SQL = "SELECT 1 FROM ca_certificates WHERE id = %s"


class _CommitOutcomeUnknown(Exception):
    """The connection failed after COMMIT was sent: the batch may or may not be stored."""


class CommitOutcomeUnknown(Unavailable):
    """The connection to the database was lost after COMMIT was sent and the database could
    not be asked afterwards: the certificate may or may not be stored. Whatever was made for
    it (a generated key) must be kept; the caller should look before issuing again."""

    reason = "COMMIT_OUTCOME_UNKNOWN"

    def __init__(self) -> None:
        super().__init__(
            "the database connection was lost while the certificate was being stored: it may"
            " have been issued; look it up (list the subject's certificates) before retrying"
        )


def _claim_of(item: PendingIssue) -> str | None:
    """The idempotency claim the item's call acted under (its audit details carry it)."""
    token = item.details.get(audit.CLAIM_DETAIL)
    return token if isinstance(token, str) else None


def _fence(batch: list[PendingIssue], held: frozenset[str]) -> list[PendingIssue]:
    """The items to write: those acting under no claim or a claim still ``held``; each other
    one fails with :class:`ClaimTakenOver` (a retry took its key over and acts instead)."""
    kept = []
    for item in batch:
        token = _claim_of(item)
        if token is not None and token not in held:
            item.error = ClaimTakenOver()
        else:
            kept.append(item)
    return kept


def _fenced(item: PendingIssue) -> bool:
    return isinstance(item.error, ClaimTakenOver)


def _report(batch: list[PendingIssue]) -> None:
    """Mark every item done and call its ``on_done`` (errors of callbacks are logged)."""
    for item in batch:
        item.done = True
        if item.on_done is not None:
            try:
                item.on_done(item)
            except Exception:  # a caller's callback must not stop the committer
                log.exception("issuance completion callback failed")


def _is_disconnect(error: BaseException) -> bool:
    """Whether ``error`` means the database connection is gone (psycopg's OperationalError on
    a broken connection, or SQLAlchemy's wrapper of it)."""
    import psycopg

    if isinstance(error, exc.DBAPIError):
        return bool(error.connection_invalidated) or isinstance(
            error.orig, psycopg.OperationalError
        )
    return isinstance(error, psycopg.OperationalError)


# The unique keys that identify one certificate: its random id, its random serial and the digest
# of its DER. A single item's insert violating one of them finds its own row (written by an
# earlier commit whose outcome was unknown). Which one a backend reports first varies (SQLite
# checks (issuer, serial) before the primary key).
_OWN_ROW_CONSTRAINTS = frozenset(
    {
        "pk_ca_certificates",
        "uq_ca_certificates_issuer_serial",
        "uq_ca_certificates_fingerprint_sha256",
    }
)
_OWN_ROW_SQLITE = frozenset(
    {
        "UNIQUE constraint failed: ca_certificates.id",
        "UNIQUE constraint failed: ca_certificates.issuer, ca_certificates.serial",
        "UNIQUE constraint failed: ca_certificates.fingerprint_sha256",
    }
)


def _is_duplicate_certificate(error: BaseException) -> bool:
    """Whether ``error`` is a unique violation on a key of the certificate itself."""
    import sqlite3

    import psycopg

    cause = error.orig if isinstance(error, exc.DBAPIError) else error
    if isinstance(cause, psycopg.errors.UniqueViolation):
        return cause.diag.constraint_name in _OWN_ROW_CONSTRAINTS
    return isinstance(cause, sqlite3.IntegrityError) and str(cause) in _OWN_ROW_SQLITE


def _unknown(error: BaseException) -> bool:
    return isinstance(error, CommitOutcomeUnknown)


def _is_unavailable(error: BaseException) -> bool:
    """A failure of the database rather than of an item: gone, or an unknown outcome."""
    return _unknown(error) or _is_disconnect(error)


def audit_records(
    batch: Sequence[PendingIssue],
    head: Sequence[Any] | None,
    recorded_at: datetime,
    key: ChainKey | None,
) -> list[dict[str, Any]]:
    """The audit records of a batch, chained after ``head`` (an :data:`audit.HEAD_SQL` row) —
    one per (actor, action), listing every certificate with its details. Chained by
    :func:`audit.chained_records` under the chain key ``key``."""
    groups: dict[tuple[str, str], list[PendingIssue]] = {}
    for item in batch:
        groups.setdefault((item.actor, item.action), []).append(item)
    entries = []
    for (actor, action), items in groups.items():
        targets = [
            f"certificate/{i.certificate['issuer']}/{i.certificate['serial']}" for i in items
        ]
        target = targets[0] if len(targets) == 1 else f"certificates/{len(targets)}"
        details = audit.canonical_json(
            {
                "certificates": [
                    {"target": t, **i.details} for t, i in zip(targets, items, strict=True)
                ]
            }
        ).decode()
        entries.append(audit.Entry(actor, action, target, details))
    return audit.chained_records(head, key, recorded_at, entries)


class GroupCommitter(BatchCommitter[PendingIssue]):
    """One committer thread per process writing queued issuances in batches."""

    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        super().__init__(max_batch=max_batch, thread_name="govtrust-ca-commit")
        self.db = db
        self.postgres = db.engine.dialect.name == "postgresql"

    # --- callers ---------------------------------------------------------------------------

    def submit(self, item: PendingIssue) -> None:
        """Queue ``item`` and return once it is committed (or raise why it was not)."""
        finished = threading.Event()
        item.on_done = lambda _item: finished.set()
        self.submit_nowait(item)
        finished.wait()
        if item.error is not None:
            raise item.error

    def submit_nowait(self, item: PendingIssue) -> None:
        """Queue ``item``; its ``on_done`` is called from the committer thread once it is
        committed or failed (``item.error`` then says why). Does not block."""
        self.submit_many([item])

    def submit_many(self, items: list[PendingIssue]) -> None:
        """:meth:`submit_nowait` for several items at once."""
        self._enqueue(items)

    # --- the committer thread --------------------------------------------------------------

    def _strand(self, items: list[PendingIssue]) -> None:
        for item in items:
            item.error = RuntimeError("the certificate committer stopped")
        _report(items)

    def _commit(self, batch: list[PendingIssue]) -> None:
        try:
            error = self._attempt(batch)
            if error is None:
                return
            if len(batch) == 1 or _is_unavailable(error):  # nothing per item would succeed
                for item in batch:
                    item.error = error
                return
            for index, item in enumerate(batch):  # isolate the failing item(s)
                failed = self._attempt([item])
                item.error = failed or item.error  # (or fenced off: see _fence)
                if failed is not None and _is_unavailable(failed):
                    # The rest were not written (the batch failed as a whole): they failed
                    # for certain, and each would only wait for a connection of its own.
                    lost = failed.__cause__ if _unknown(failed) else None
                    for rest in batch[index + 1 :]:
                        rest.error = lost or failed
                    return
        except BaseException as error:  # the thread is going down: nobody may wait forever
            for item in batch:
                item.error = error
            raise
        finally:
            _report(batch)

    def _attempt(self, batch: list[PendingIssue]) -> Exception | None:
        """Write ``batch`` in one transaction; None once it is stored, else why not (a
        :class:`CommitOutcomeUnknown` when it may be stored)."""
        for attempt in (1, 2):
            try:
                self._write(batch)
                return None
            except _CommitOutcomeUnknown as unknown:
                try:
                    if self._stored(batch):  # the transaction is atomic: all or nothing
                        return None
                except Exception as error:  # noqa: BLE001 - the database is still unreachable
                    log.error("commit outcome unknown and the database cannot be asked: %s", error)
                    outcome = CommitOutcomeUnknown()
                    outcome.__cause__ = error
                    return outcome
                lost = unknown.__cause__ if isinstance(unknown.__cause__, Exception) else unknown
                if attempt == 2:
                    return lost  # looked, not stored: a plain failure
                log.warning("database connection lost at commit; not stored, writing it again")
            except Exception as error:  # noqa: BLE001 - reported to the callers
                if len(batch) == 1 and _is_duplicate_certificate(error):
                    return None  # an earlier commit whose outcome was unknown did store it
                return error
        raise AssertionError("unreachable")

    def _stored(self, batch: list[PendingIssue]) -> bool:
        """Whether ``batch``'s certificates are stored (ids are random: only its own insert).

        On PostgreSQL the look-up first takes the audit chain's lock, which the lost
        transaction holds until its backend has finished: a commit still in flight is waited
        for instead of missed. Raises when the database cannot be asked (or the lock not
        taken within :data:`LOOKUP_LOCK_TIMEOUT`)."""
        ids = [item.certificate["id"] for item in batch if not _fenced(item)]
        with self.db.read() as session:
            if self.postgres:
                session.execute(  # SET LOCAL: for this transaction only
                    text("SELECT set_config('lock_timeout', :timeout, true)"),
                    {"timeout": LOOKUP_LOCK_TIMEOUT},
                )
                audit.lock_chain(session)
            found = session.scalars(select(CaCertificate.id).where(CaCertificate.id.in_(ids)))
            return len(set(found)) == len(ids)

    def _write(self, batch: list[PendingIssue]) -> None:
        batch = [item for item in batch if not _fenced(item)]
        if not batch:
            return
        if not self.postgres:
            self._write_orm(batch)
            return
        try:
            self._write_postgres(batch)
        except _CommitOutcomeUnknown:
            raise
        except Exception as error:
            if not _is_disconnect(error):
                raise
            # The connection was lost before COMMIT was sent: nothing is stored. The pool has
            # dropped the connection; try once more on a fresh one (fenced again: a claim may
            # have been taken over meanwhile).
            log.warning("database connection lost before commit; retrying the batch once")
            self._write_postgres(batch)

    def _write_postgres(self, batch: list[PendingIssue]) -> None:
        """Two round trips on the driver connection: lock + chain head; rows + COMMIT."""
        connection = self.db.engine.raw_connection()
        commit_sent = False
        try:
            conn = connection.driver_connection
            assert conn is not None
            try:
                with conn.pipeline() as pipeline:
                    cursor = conn.cursor()
                    tokens = [t for t in map(_claim_of, batch) if t is not None]
                    claims_cursor = conn.cursor()
                    if tokens:  # each claimed item's key, still held and locked (_fence)
                        claims_cursor.execute(HELD_CLAIMS_SQL, (tokens,))
                    cursor.execute(PG_CHAIN_LOCK_SQL)
                    head_cursor = conn.cursor()
                    head_cursor.execute(HEAD_SQL)
                    pipeline.sync()
                    held = frozenset(r[0] for r in claims_cursor.fetchall()) if tokens else None
                    if held is not None:
                        batch = _fence(batch, held)
                        if not batch:
                            conn.rollback()
                            return
                    records = audit_records(
                        batch, head_cursor.fetchone(), datetime.now(UTC), audit.chain_key(self.db)
                    )
                    cursor.executemany(
                        _CERT_SQL, [tuple([i.certificate[c] for c in _CERT_INSERT]) for i in batch]
                    )
                    cursor.executemany(
                        _OCSP_SQL, [tuple([i.ocsp[c] for c in _OCSP_COLUMNS]) for i in batch]
                    )
                    renewals = [
                        (i.certificate["id"], i.renewed_from) for i in batch if i.renewed_from
                    ]
                    if renewals:
                        cursor.executemany(_RENEWED_SQL, renewals)
                    cursor.executemany(
                        _AUDIT_SQL, [tuple([r[c] for c in AUDIT_COLUMNS]) for r in records]
                    )
                    commit_sent = True
                    conn.commit()
            except BaseException as error:
                if conn.broken or conn.closed:
                    connection.invalidate(error if isinstance(error, Exception) else None)
                    if commit_sent and isinstance(error, Exception):
                        raise _CommitOutcomeUnknown(str(error)) from error
                else:
                    conn.rollback()
                raise
        finally:
            connection.close()

    def _write_orm(self, batch: list[PendingIssue]) -> None:
        with self.db.transaction() as session:
            tokens = [t for t in map(_claim_of, batch) if t is not None]
            if tokens:
                batch = _fence(batch, held_claims(session, tokens))
                if not batch:
                    return
            certificates = cast(Table, CaCertificate.__table__)
            responses = cast(Table, CaOcspResponse.__table__)
            session.execute(insert(certificates), [i.certificate for i in batch])
            session.execute(insert(responses), [i.ocsp for i in batch])
            for item in batch:
                if item.renewed_from is not None:
                    session.execute(
                        update(CaCertificate)
                        .where(CaCertificate.id == item.renewed_from)
                        .values(renewed_by=item.certificate["id"])
                    )
            # BEGIN IMMEDIATE holds SQLite's write lock: the chain cannot fork
            head = session.execute(text(HEAD_SQL)).first()
            records = audit_records(batch, head, datetime.now(UTC), audit.chain_key(self.db))
            session.execute(insert(cast(Table, AuditRecord.__table__)), records)
