"""A per-request work budget: a deadline and a cancel flag, checked cooperatively.

Work on untrusted input (a PDF from an anonymous caller) runs with a :class:`Budget` in a
context variable (:func:`budget_scope`); long loops call :func:`checkpoint` between steps (a
revision, an object look-up, a signature). The pool that runs the work
(:class:`govtrust.rpc.offload.BoundedPool`) cancels the budget when the caller goes away (an
HTTP client disconnected, a gRPC call cancelled), so abandoned work stops at its next
checkpoint instead of holding a worker. Outside a scope :func:`checkpoint` does nothing.

A checkpoint also yields the interpreter lock at most every :data:`YIELD_SECONDS` of work:
CPU-bound document threads would otherwise hold it for whole switch intervals each time the
event loop (health checks, gRPC calls) asks for it, and those answers would slow down by the
number of hand-overs they need times 5 ms.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from govtrust.errors import ResourceExhausted

YIELD_SECONDS = 0.001


class BudgetExceeded(ResourceExhausted):
    """The work took longer than its time budget."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the document took longer than the time budget of {seconds:g} s to check "
            "(GOVTRUST_DOCUMENT_BUDGET_SECONDS)"
        )
        self.seconds = seconds


class WorkCancelled(ResourceExhausted):
    """The caller went away; the work was abandoned."""

    def __init__(self) -> None:
        super().__init__("the request was cancelled by its caller")


class Budget:
    """A deadline (``seconds`` from now; None: none) and a cancel flag, safe across threads."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self._cancelled = threading.Event()
        self._yielded = time.monotonic()

    def cancel(self) -> None:
        """Ask the work to stop at its next checkpoint."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise WorkCancelled or BudgetExceeded when the work must stop."""
        if self._cancelled.is_set():
            raise WorkCancelled
        moment = time.monotonic()
        if self.deadline is not None and moment > self.deadline:
            raise BudgetExceeded(self.seconds or 0.0)
        if moment - self._yielded > YIELD_SECONDS:
            self._yielded = moment
            time.sleep(0)  # let a waiting thread (the event loop) take the interpreter lock


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "govtrust_budget", default=None
)


@contextmanager
def budget_scope(budget: Budget) -> Iterator[Budget]:
    """Make ``budget`` the one :func:`checkpoint` checks, for the ``with`` block."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def checkpoint() -> None:
    """Stop here (raise) when the current budget is spent or cancelled; else nothing."""
    budget = _current.get()
    if budget is not None:
        budget.check()
