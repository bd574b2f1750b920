"""Refresh-token rotations written by group commit, each with its audit record.

A rotation is one conditional claim (``UPDATE … RETURNING``: only a live, unused token of this
client), the inserts of the tokens minted for it, and its ``oidc.token.refresh`` audit record.
:class:`RotationCommitter` (a :class:`ca.batch.BatchCommitter`) writes the rotations queued by
concurrent requests in ONE transaction: every claim first, then every minted token, then ONE
audit-chain lock, one head read and the records of the rotations that claimed (chained in
order with :func:`govtrust.audit.chained_records`, the primitive under
:func:`govtrust.audit.append_many`; the rotation's writes are driver-level, so no ORM session).
A lone rotation is written in its caller's thread (no hand-over). A re-answer within the
refresh tokens' reuse interval (``idp/oidc/reuse.py``) is a rotation too, whose claim supersedes
the rotated token's unused successor instead (:data:`idp.oidc.reuse.SQL_SUPERSEDE`); it is rare,
and costs the normal rotations of its batch nothing.

Why batching keeps the per-call semantics: each claim still checks-and-consumes its own token in
one statement, so a token presented twice in one batch is claimed once and the second caller is
refused and goes on to reuse detection (family revocation), after the batch committed, exactly as
when the two met in separate transactions. Family revocation itself is not batched (it is rare
and writes through the ORM). The chain lock is taken after every claim, as :func:`audit.append`
orders it (the change, then the chain), so a family revocation holding token rows and waiting
for the chain cannot deadlock with a batch. A batch is all-or-nothing: a failed write fails
every caller of the batch (nothing of it is committed), and a caller is answered only after its
batch committed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ca.batch import BatchCommitter
from govtrust import audit
from govtrust.db import Database
from govtrust.fastsql import FastSql, WriteBusy
from idp.oidc.reuse import SQL_SUPERSEDE

# Check-and-consume in one statement: only a live, unused token of this client.
SQL_CLAIM_REFRESH = (
    "UPDATE oidc_refresh_tokens SET used_at = :used WHERE token_hash = :h AND client_id = :cid"
    " AND used_at IS NULL AND revoked_at IS NULL AND expires_at > :at AND EXISTS (SELECT 1"
    " FROM oidc_grants g WHERE g.id = oidc_refresh_tokens.grant_id AND g.revoked_at IS NULL)"
    " RETURNING grant_id"
)
SQL_INSERT_REFRESH = (
    "INSERT INTO oidc_refresh_tokens (token_hash, grant_id, client_id, scope, created_at,"
    " expires_at, used_at, revoked_at, rotated_from) VALUES (:token_hash, :grant_id, :client_id,"
    " :scope, :created_at, :expires_at, NULL, NULL, :rotated_from)"
)
_SQL_CHAIN_LOCK_PG = audit.PG_CHAIN_LOCK_SQL
# On PostgreSQL the batch's last claim also takes the chain's lock once it holds the token's row
# (a round trip less for a lone rotation); the lock is taken on its own if that claim failed.
_SQL_CLAIM_REFRESH_PG = f"{SQL_CLAIM_REFRESH}, {audit.PG_CHAIN_LOCK_TERMS}"


@dataclass(eq=False)
class PendingRotation:
    """One rotation waiting to be written: its claim, its minted tokens, its audit entry."""

    params: dict[str, Any]  # h, cid, at, used; s, since when superseding (driver terms)
    minted: list[dict[str, Any]]  # oidc_refresh_tokens rows (driver terms)
    entry: audit.Entry
    now: datetime
    wait: bool = True  # False: a lone write must not wait for SQLite's lock (WriteBusy)
    # True: a re-answer within the reuse interval, whose claim supersedes the unused successor
    # ``s`` of the rotated token ``h`` (idp/oidc/reuse.py) instead of claiming ``h``
    supersede: bool = False
    claimed: bool = False
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class RotationCommitter(BatchCommitter[PendingRotation]):
    """One committer thread per provider writing refresh rotations in batches."""

    def __init__(self, db: Database, fast: FastSql, gate: Any, *, max_batch: int = 128) -> None:
        super().__init__(max_batch=max_batch, thread_name="govtrust-oidc-rotation")
        self.db = db
        self.fast = fast
        self.gate = gate  # the provider's write gate (SQLite), held for the batch
        self._claim = fast.sql(SQL_CLAIM_REFRESH)
        self._claim_locking = self._claim if fast.sqlite else fast.sql(_SQL_CLAIM_REFRESH_PG)
        self._supersede = fast.sql(SQL_SUPERSEDE)
        self._insert = fast.sql(SQL_INSERT_REFRESH)
        self._audit = fast.sql(audit.INSERT_SQL)

    def rotate(self, item: PendingRotation) -> bool:
        """Write ``item`` (alone if nobody else is writing, else in the next batch) and return
        whether its token was claimed. ``item.wait=False`` (a caller on the event loop) never
        waits: :class:`WriteBusy` when the write would (nothing written)."""
        if not self._commit_alone(item):
            if not item.wait:
                raise WriteBusy("rotations are being written")
            self._enqueue([item])
            item.finished.wait()
        if item.error is not None:
            raise item.error
        return item.claimed

    def _commit(self, batch: list[PendingRotation]) -> None:
        fast = self.fast
        try:
            wait = all(item.wait for item in batch)
            with self.gate, fast.write(wait=wait) as cur:
                claimed: list[PendingRotation] = []
                for item in batch:
                    if item.supersede:
                        statement = self._supersede
                    else:
                        statement = self._claim_locking if item is batch[-1] else self._claim
                    cur.execute(statement, item.params)
                    if cur.fetchone() is not None:
                        claimed.append(item)
                # SQLite's BEGIN IMMEDIATE holds the chain already; on PostgreSQL the last claim
                # took its lock, unless that claim failed (or superseded: no lock taken).
                last = batch[-1]
                locked = fast.sqlite or (
                    bool(claimed) and claimed[-1] is last and not last.supersede
                )
                rows = [row for item in claimed for row in item.minted]
                if rows:
                    cur.executemany(self._insert, rows)
                if claimed:
                    if not locked:
                        cur.execute(_SQL_CHAIN_LOCK_PG)
                    cur.execute(audit.HEAD_SQL)
                    head = cur.fetchone()
                    at = max(item.now for item in claimed)
                    entries = [item.entry for item in claimed]
                    records = audit.chained_records(head, audit.chain_key(self.db), at, entries)
                    for record in records:
                        record["recorded_at"] = fast.ts(record["recorded_at"])
                    cur.executemany(self._audit, records)
            for item in claimed:
                item.claimed = True
        except BaseException as error:  # every caller of the batch learns it; nothing committed
            for item in batch:
                item.error = error
            if not isinstance(error, Exception):
                raise
        finally:
            for item in batch:
                item.finished.set()

    def _strand(self, items: list[PendingRotation]) -> None:
        for item in items:
            item.error = RuntimeError("the refresh rotation committer stopped")
            item.finished.set()
