"""The durable record of issued time-stamp tokens, written by group commit.

Every granted token is recorded (serial, genTime, policy, imprint) in ``ca_tsa_tokens`` before
its response leaves the TSA. Tokens are handed to the process's :class:`TokenLedger` (a
:class:`ca.batch.BatchCommitter`): one committer thread takes everything queued (up to
``max_batch``) and writes it with one multi-row INSERT in ONE transaction, so concurrent
requests share a commit instead of paying one each (what bounded ``POST /tsa``).

Crash semantics: a caller is told its token is recorded only after the transaction holding it
committed, and the TSA answers only then, so a token that reached a client is always in the
ledger (durably on PostgreSQL with ``synchronous_commit=on``; on the embedded SQLite database a
commit survives a crash of the process but the last ones may be lost on power loss). A crash
loses only queued records whose tokens were never sent. A batch that fails is failed as a whole
(each caller answers ``systemFailure``; the client asks again): serials are 128 random bits, so
no row of a batch can fail on its own, and a batch whose COMMIT outcome is unknown may leave
records of tokens that were never sent — harmless, a serial nobody holds.

A caller that holds its tokens back until it has checked them recorded (bulk licence issuance:
the sealed documents are stored only after) can grant many without a commit wait each: within
:func:`deferring`, :meth:`TokenLedger.record` in that thread holds the token back and returns
at once; :func:`submit_together` (or :meth:`DeferredRecords.wait`) then queues what is held in
one go, and :meth:`DeferredRecords.wait` waits for them all, so a chunk's tokens share one
commit instead of one or two each (queued one by one as they were granted, a few
milliseconds apart, each found the committer idle and was committed nearly alone).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from ca.batch import BatchCommitter
from govtrust.db import Database
from govtrust.fastsql import FastSql

log = logging.getLogger("govtrust.ca.tsa_ledger")

_COLUMNS = ("serial", "gen_time", "policy", "hash_algorithm", "message_imprint")
# the ledger's one statement, on its own table (ca_tsa_tokens, ca.models.CaTsaToken)
_INSERT = (
    f"INSERT INTO ca_tsa_tokens ({', '.join(_COLUMNS)}) "  # noqa: S608 - constants only
    f"VALUES ({', '.join(':' + c for c in _COLUMNS)})"
)


@dataclass(eq=False)
class PendingToken:
    """One granted token waiting to be recorded."""

    serial: str  # upper-case hex
    gen_time: datetime
    policy: str
    hash_algorithm: str
    message_imprint: str  # hex
    done: bool = False
    error: BaseException | None = None
    on_done: Callable[[PendingToken], None] | None = None

    def row(self, fast: FastSql) -> dict[str, object]:
        """The ``ca_tsa_tokens`` row, in the driver's terms."""
        return {
            "serial": self.serial,
            "gen_time": fast.ts(self.gen_time),
            "policy": self.policy,
            "hash_algorithm": self.hash_algorithm,
            "message_imprint": self.message_imprint,
        }


def _report(batch: list[PendingToken]) -> None:
    for item in batch:
        item.done = True
        if item.on_done is not None:
            try:
                item.on_done(item)
            except Exception:  # a caller's callback must not stop the committer
                log.exception("time-stamp completion callback failed")


class DeferredRecords:
    """Tokens whose records were held back without waiting (:func:`deferring`)."""

    def __init__(self) -> None:
        self._pending: list[tuple[PendingToken, threading.Event]] = []
        self._unsubmitted: list[tuple[TokenLedger, PendingToken]] = []

    def add(self, token: PendingToken, ledger: TokenLedger) -> None:
        """Hold ``token`` for ``ledger``: :meth:`wait` queues it (unless :meth:`submit` or
        :func:`submit_together` did) and returns once it is committed or failed."""
        finished = threading.Event()
        token.on_done = lambda _token: finished.set()
        self._pending.append((token, finished))
        self._unsubmitted.append((ledger, token))

    def submit(self) -> None:
        """Queue the tokens held and not yet queued, each ledger's in one go."""
        submit_together([self])

    def wait(self) -> BaseException | None:
        """Queue what is left, then wait for every token held; the first one's error if any
        was not recorded."""
        self.submit()
        error: BaseException | None = None
        for token, finished in self._pending:
            finished.wait()
            if error is None:
                error = token.error
        return error


def submit_together(records: Iterable[DeferredRecords]) -> None:
    """Queue the held tokens of every one of ``records`` at once (one hand-over per ledger,
    so that they share its next commit)."""
    by_ledger: dict[int, tuple[TokenLedger, list[PendingToken]]] = {}
    for held in records:
        for ledger, token in held._unsubmitted:
            by_ledger.setdefault(id(ledger), (ledger, []))[1].append(token)
        held._unsubmitted = []
    for ledger, tokens in by_ledger.values():
        ledger.record_all_nowait(tokens)


_DEFERRED = threading.local()


@contextmanager
def deferring(records: DeferredRecords) -> Iterator[DeferredRecords]:
    """Within: :meth:`TokenLedger.record` in this thread holds its token in ``records`` and
    returns at once. The caller must not let any such token out (in a response, a stored
    document) before ``records.wait()`` returned ``None``."""
    previous = getattr(_DEFERRED, "records", None)
    _DEFERRED.records = records
    try:
        yield records
    finally:
        _DEFERRED.records = previous


class TokenLedger(BatchCommitter[PendingToken]):
    """One committer thread per process recording granted tokens in batches."""

    def __init__(self, db: Database, *, max_batch: int = 512) -> None:
        super().__init__(max_batch=max_batch, thread_name="govtrust-tsa-ledger")
        self.db = db
        self._fast = FastSql(db.engine)  # driver-level: a few hundred us less per commit
        self._sql = self._fast.sql(_INSERT)

    def record(self, token: PendingToken) -> None:
        """Return once ``token`` is committed (or raise why it was not): written at once when
        the ledger is idle, else queued to share the next commit. Within :func:`deferring`:
        held back, returning at once (the caller queues and waits for the whole lot later)."""
        deferred: DeferredRecords | None = getattr(_DEFERRED, "records", None)
        if deferred is not None:
            deferred.add(token, self)
            return
        if not self._commit_alone(token):
            finished = threading.Event()
            token.on_done = lambda _token: finished.set()
            self.record_nowait(token)
            finished.wait()
        if token.error is not None:
            raise token.error

    def record_nowait(self, token: PendingToken) -> None:
        """Queue ``token``; its ``on_done`` runs in the committer thread once it is committed
        or failed (``token.error`` then says why). Does not block; ``on_done`` must not."""
        self._enqueue([token])

    def record_all_nowait(self, tokens: list[PendingToken]) -> None:
        """:meth:`record_nowait` of each of ``tokens``, queued in one go."""
        if tokens:
            self._enqueue(tokens)

    def _commit(self, batch: list[PendingToken]) -> None:
        try:
            with self._fast.write() as cursor:
                cursor.executemany(self._sql, [item.row(self._fast) for item in batch])
        except Exception as error:  # noqa: BLE001 - reported to every caller of the batch
            log.warning("could not record %d time-stamp token(s): %s", len(batch), error)
            for item in batch:
                item.error = error
        except BaseException as error:  # the thread is going down: nobody may wait forever
            for item in batch:
                item.error = error
            raise
        finally:
            _report(batch)

    def _strand(self, items: list[PendingToken]) -> None:
        for item in items:
            item.error = RuntimeError("the time-stamp ledger stopped")
        _report(items)
