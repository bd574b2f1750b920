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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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


class TokenLedger(BatchCommitter[PendingToken]):
    """One committer thread per process recording granted tokens in batches."""

    def __init__(self, db: Database, *, max_batch: int = 512) -> None:
        super().__init__(max_batch=max_batch, thread_name="govtrust-tsa-ledger")
        self.db = db
        self._fast = FastSql(db.engine)  # driver-level: a few hundred us less per commit
        self._sql = self._fast.sql(_INSERT)

    def record(self, token: PendingToken) -> None:
        """Return once ``token`` is committed (or raise why it was not): written at once when
        the ledger is idle, else queued to share the next commit."""
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
