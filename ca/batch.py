"""One committer thread per process that writes queued items in batches (group commit).

:class:`BatchCommitter` holds what every group commit of the CA shares: the queue, the thread
that takes up to ``max_batch`` items at a time and hands them to :meth:`BatchCommitter._commit`
(one transaction per batch, written by the subclass), the thread ending after
:data:`IDLE_EXIT_SECONDS` without work and starting again on the next submit, a fork detected
(the parent's thread does not exist in the child), and queued items failed rather than left
waiting when the thread dies. A lone blocking caller (nothing queued, nothing being written)
writes its item in its own thread (:meth:`BatchCommitter._commit_alone`): the hand-over to the
committer thread and back costs more than the commit itself when there is nobody to share it
with. Subclasses: :class:`ca.store.GroupCommitter` (issued
certificates), :class:`ca.tsa_ledger.TokenLedger` (issued time-stamp tokens) and
:class:`idp.oidc.rotation.RotationCommitter` (refresh rotations with their audit records).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

IDLE_EXIT_SECONDS = 5.0  # the committer thread ends after this long without work

T = TypeVar("T")


class BatchCommitter(ABC, Generic[T]):
    """A queue drained in batches by one committer thread per process."""

    def __init__(self, *, max_batch: int = 256, thread_name: str = "govtrust-commit") -> None:
        self.max_batch = max_batch
        self.thread_name = thread_name
        self._queue: list[T] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._in_flight = 0  # batches being written (by the thread or by a leading caller)

    def _enqueue(self, items: list[T]) -> None:
        """Queue ``items`` and make sure a committer thread will take them."""
        with self._cond:
            if self._pid != os.getpid():  # forked: the parent's thread does not exist here
                self._pid, self._thread, self._queue = os.getpid(), None, []
            self._queue.extend(items)
            if self._thread is not None:
                self._cond.notify()
                return
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            try:
                self._thread.start()
            except BaseException:  # nothing will commit them: take them back
                self._thread = None
                del self._queue[len(self._queue) - len(items) :]
                raise

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if not self._queue:
                        notified = self._cond.wait(IDLE_EXIT_SECONDS)
                        if not self._queue:
                            if notified:
                                continue
                            self._thread = None  # idle: the next submit starts a new thread
                            return
                    batch = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                    self._in_flight += 1
                try:
                    self._commit(batch)
                finally:
                    with self._cond:
                        self._in_flight -= 1
        except BaseException:
            with self._cond:  # fail what is queued; the next submit starts a new thread
                stranded, self._queue, self._thread = self._queue, [], None
            self._strand(stranded)
            raise

    def _commit_alone(self, item: T) -> bool:
        """Write ``item`` in the caller's thread when nothing is queued or being written (a
        lone caller then pays no hand-over to the committer thread); False when others are
        about, and the caller queues it instead (to share their commit)."""
        with self._cond:
            if self._pid != os.getpid() or self._queue or self._in_flight:
                return False
            self._in_flight += 1
        try:
            self._commit([item])
        finally:
            with self._cond:
                self._in_flight -= 1
        return True

    @abstractmethod
    def _commit(self, batch: list[T]) -> None:
        """Write ``batch`` and report every item done or failed (never leave one waiting)."""

    @abstractmethod
    def _strand(self, items: list[T]) -> None:
        """Fail and report ``items``: the committer thread stopped before taking them."""
