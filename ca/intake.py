"""Issuance for adapters that must not block: a few threads prepare, the group commit stores.

The gRPC servicer hands each IssueCertificate call to :meth:`IssueIntake.submit` and awaits a
future on its event loop. Intake threads (``CaConfig.issue_threads`` per process) each take
their share of the queued requests (all of them with one thread, the default with the soft key
store), run the checked sequence up to the signed certificate and its OCSP response
(:func:`ca.issuance.prepare`) in the caller's context variables, and hand the whole round to the
group commit (:meth:`ca.store.GroupCommitter.submit_many`). The callback runs in the committer
thread once the transaction holding the certificate committed (or with the error that stopped
it), so an answer still means "stored" — durably on PostgreSQL with ``synchronous_commit=on``
(production); on the embedded SQLite database (WAL, ``synchronous=NORMAL``) the last commits
may be lost on power loss (see :mod:`ca.store`).

Compared with one pool hand-off per call (``run_sync``), a thread wakes per round instead of per
call and the group commit receives its batch in one piece: on the 2-core machine the thread
hand-offs and GIL switches around each call cost about as much CPU as building the certificate.
More than one intake thread keeps a slow key store (a network HSM) or a slow registry look-up
from stalling every issuance of the process.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ca.issuance import Prepared
from ca.store import GroupCommitter, PendingIssue

log = logging.getLogger("govtrust.ca.intake")

Done = Callable[[Prepared | None, BaseException | None], None]
IDLE_EXIT_SECONDS = 5.0
MAX_ROUND = 256


@dataclass(eq=False)
class _Job:
    prepare: Callable[[], Prepared]
    on_done: Done
    context: contextvars.Context


class IssueIntake:
    """A queue of issuance requests served by ``threads`` intake threads."""

    def __init__(self, committer: GroupCommitter, *, threads: int = 2) -> None:
        self.committer = committer
        self.threads = max(1, threads)
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._running = 0
        self._idle = 0
        self._pid = os.getpid()

    def submit(self, prepare: Callable[[], Prepared], on_done: Done) -> None:
        """Queue ``prepare`` (run in an intake thread with the caller's context variables);
        ``on_done(prepared, None)`` follows the commit, ``on_done(None, error)`` a failure.
        ``on_done`` runs in an intake or committer thread and must not block."""
        job = _Job(prepare, on_done, contextvars.copy_context())
        with self._cond:
            if self._pid != os.getpid():  # forked: the parent's threads do not exist here
                self._pid, self._queue, self._running, self._idle = os.getpid(), [], 0, 0
            self._queue.append(job)
            if self._idle:
                self._cond.notify()
            elif self._running < self.threads:
                try:
                    self._start_thread()
                except BaseException:  # nothing may serve it: take it back
                    self._queue.remove(job)
                    raise

    def _start_thread(self) -> None:
        """Start one more intake thread (with ``_cond`` held); on failure nothing changed."""
        self._running += 1
        try:
            threading.Thread(target=self._run, name="govtrust-ca-intake", daemon=True).start()
        except BaseException:
            self._running -= 1
            raise

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._idle += 1
                    notified = self._cond.wait(IDLE_EXIT_SECONDS)
                    self._idle -= 1
                    if not self._queue:
                        if notified:  # another intake thread took the work: keep waiting
                            continue
                        self._running -= 1
                        return
                # This thread's share: the others take the rest (a slow key store keeps each
                # busy); one thread takes everything, for the largest commit batches.
                share = min(MAX_ROUND, -(-len(self._queue) // self.threads))
                jobs = self._queue[:share]
                del self._queue[:share]
                if self._queue:
                    self._wake_helper()
            self._round(jobs)

    def _wake_helper(self) -> None:
        """Work is left after this thread took its share: wake an idle thread or start one."""
        if self._idle:
            self._cond.notify()
        elif self._running < self.threads:
            try:
                self._start_thread()
            except Exception:  # this thread serves the rest itself
                log.warning("could not start another intake thread", exc_info=True)

    def _round(self, jobs: list[_Job]) -> None:
        ready: list[PendingIssue] = []
        for job in jobs:
            try:
                prepared = job.context.run(job.prepare)
            except BaseException as error:  # noqa: BLE001 - reported to the caller
                _notify(job.on_done, None, error)
                continue
            prepared.pending.on_done = _committed(prepared, job.on_done)
            ready.append(prepared.pending)
        if ready:
            try:
                self.committer.submit_many(ready)
            except Exception as error:  # e.g. no thread could be started: report, keep serving
                log.exception("could not hand issuances to the group commit")
                for item in ready:
                    item.error = error
                    item.done = True
                    if item.on_done is not None:
                        item.on_done(item)


def _committed(prepared: Prepared, on_done: Done) -> Callable[[PendingIssue], None]:
    def done(item: PendingIssue) -> None:
        _notify(on_done, prepared, item.error)

    return done


def _notify(on_done: Done, prepared: Prepared | None, error: BaseException | None) -> None:
    try:
        on_done(prepared if error is None else None, error)
    except Exception:  # a caller's callback must not stop the thread
        log.exception("issuance completion callback failed")
