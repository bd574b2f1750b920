"""Run synchronous domain code off the event loop, in one bounded thread pool per process.

Domain code (SQLAlchemy sessions, key-store signing, PDF work) is synchronous; servicers and
routes are ``async``. ``await run_sync(fn, *args)`` runs ``fn`` in the pool with the caller's
context variables (principal, request id), so the loop keeps serving other calls meanwhile.
The pool is bounded to roughly the database pool size: more threads would only queue on
connections.

Checking an untrusted document runs in a :class:`BoundedPool` of its own
(:func:`document_pool`), so that such checks can never take the shared pool's threads from the
gRPC calls, the health endpoints or the pages: the public page's (:data:`PUBLIC`, anonymous
callers: two threads and a short queue) and VerifyPdf's (:data:`VERIFY`, authenticated business
systems that legitimately send many documents at once: as many threads as the shared pool and
a long queue). Beyond ``workers + queue`` admitted
requests, :meth:`BoundedPool.run` refuses at once with :class:`PoolBusy` (503 / UNAVAILABLE,
with a retry-after estimate). Every admitted request carries a :class:`govtrust.budget.Budget`:
its deadline (``budget_seconds`` from admission, so it also bounds the caller's wait) and a
cancel flag set when the awaiting caller is cancelled (a gRPC call cancelled, an HTTP client
gone): the work stops at its next :func:`govtrust.budget.checkpoint`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import os
import threading
import time
from asyncio import _get_running_loop  # public in asyncio.events.__all__; None, not an error
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar, cast

from govtrust.budget import Budget, budget_scope
from govtrust.errors import Unavailable

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def default_max_workers() -> int:
    """CPU count + 4, capped at 20 (the database pool's size plus overflow)."""
    return min(20, (os.cpu_count() or 1) + 4)


def configure_executor(max_workers: int | None = None) -> ThreadPoolExecutor:
    """(Re)create the process's pool; called once at server start."""
    global _executor
    with _lock:
        if _executor is not None:
            _executor.shutdown(wait=False)
        _executor = ThreadPoolExecutor(
            max_workers=max_workers or default_max_workers(), thread_name_prefix="govtrust-sync"
        )
        return _executor


def get_executor() -> ThreadPoolExecutor:
    """The process's pool, created on first use."""
    global _executor
    executor = _executor
    if executor is not None:  # the per-call path: no lock once the pool exists
        return executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=default_max_workers(), thread_name_prefix="govtrust-sync"
            )
        return _executor


def shutdown_executor(*, wait: bool = True) -> None:
    """Stop the pool (after the servers have drained)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=wait, cancel_futures=not wait)


def driven_inline() -> bool:
    """Whether the calling code runs with no event loop — a coroutine driven by the synchronous
    gRPC transport on its own thread (:mod:`govtrust.rpc.sync_transport`). There, awaiting must
    never suspend: waits block the thread instead."""
    return _get_running_loop() is None


_inline_slots = threading.BoundedSemaphore(default_max_workers())


async def run_sync(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` run in the bounded pool, with the caller's contextvars.

    Driven inline (no event loop: the synchronous transport's thread), ``fn`` runs right here,
    holding one of as many slots as the pool has threads — the same bound on concurrent domain
    work (and so on database connections) either way."""
    loop = _get_running_loop()
    if loop is None:
        with _inline_slots:
            return fn(*args, **kwargs)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    future = (_executor or get_executor()).submit(call)
    try:
        return await asyncio.wrap_future(future, loop=loop)
    except asyncio.CancelledError:
        # the awaiting task is cancelled, the thread works on: tell whoever collects such work
        left = _left_running.get()
        if left is not None and not future.done():
            left.append(cast("Future[object]", future))
        raise


_left_running: contextvars.ContextVar[list[Future[object]] | None] = contextvars.ContextVar(
    "govtrust_left_running", default=None
)


@contextlib.contextmanager
def left_running() -> Iterator[list[Future[object]]]:
    """Collect the work :func:`run_sync` leaves running in the block: a task cancelled while it
    awaits ``run_sync`` gets ``CancelledError`` at once, but the thread cannot be stopped and
    works on — the list names those threads' futures, so that what must follow the work (the
    request ledger's release of a claim) waits for it."""
    left: list[Future[object]] = []
    token = _left_running.set(left)
    try:
        yield left
    finally:
        _left_running.reset(token)


class CallCancellation:
    """The cancellation of one call driven inline (the synchronous transport's): hooks added
    while it runs are called when the call is cancelled — at once if it already was. (On the
    event loop a cancelled call's task gets ``CancelledError`` instead.)"""

    __slots__ = ("_hooks", "_lock", "cancelled", "finished")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self.cancelled = False
        self.finished = False

    def finish(self) -> None:
        """The call's behaviour returned: its end from now on is no cancellation."""
        self.finished = True

    def cancel(self) -> None:
        """Mark the call cancelled and call the hooks (the transport's termination callback);
        nothing once the call finished."""
        with self._lock:
            if self.finished:
                return
            self.cancelled = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    @contextlib.contextmanager
    def hook(self, hook: Callable[[], None]) -> Iterator[None]:
        """Call ``hook`` if the call is cancelled while the block runs."""
        with self._lock:
            cancelled = self.cancelled
            if not cancelled:
                self._hooks.append(hook)
        if cancelled:
            hook()
        try:
            yield
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._hooks.remove(hook)


_cancellation: contextvars.ContextVar[CallCancellation | None] = contextvars.ContextVar(
    "govtrust_call_cancellation", default=None
)


def bind_cancellation(cancellation: CallCancellation | None) -> None:
    """Set the current call's cancellation (the synchronous transport, once per call)."""
    _cancellation.set(cancellation)


@contextlib.contextmanager
def on_cancel(hook: Callable[[], None]) -> Iterator[None]:
    """Call ``hook`` if the current inline-driven call is cancelled while the block runs."""
    cancellation = _cancellation.get()
    if cancellation is None:
        yield
        return
    with cancellation.hook(hook):
        yield


async def wait_for_future(future: Future[T]) -> T:
    """The result of a ``concurrent.futures`` future: awaited on the loop, or waited for on the
    thread when driven inline."""
    if _get_running_loop() is None:
        return future.result()
    return await asyncio.wrap_future(future)


# --- the bounded pool of document checks -------------------------------------------------------


class PoolBusy(Unavailable):
    """Every worker and queue place of a bounded pool is taken; retry after ``retry_after`` s."""

    def __init__(self, name: str, retry_after: int) -> None:
        setting = "GOVTRUST_" + name.upper().replace("-", "_")
        super().__init__(
            f"too many {name.replace('-', ' ')} checks are running or waiting; retry in "
            f"{retry_after} s ({setting}_WORKERS, {setting}_QUEUE)"
        )
        self.retry_after = retry_after


class BoundedPool:
    """``workers`` threads of its own, at most ``queue`` requests waiting, each request under a
    :class:`Budget` of ``budget_seconds`` (see the module docstring)."""

    def __init__(
        self, name: str, *, workers: int = 2, queue: int = 4, budget_seconds: float = 20.0
    ) -> None:
        if workers < 1 or queue < 0 or budget_seconds <= 0:
            raise ValueError("a bounded pool needs workers >= 1, queue >= 0, budget > 0")
        self.name = name
        self.workers = workers
        self.queue = queue
        self.budget_seconds = budget_seconds
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"govtrust-{name}"
        )
        self._lock = threading.Lock()
        self._admitted = 0
        self._average = 1.0  # seconds a request holds a worker (moving average)

    @property
    def admitted(self) -> int:
        """Requests running or waiting (including abandoned ones not yet at a checkpoint)."""
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue's share of the average request."""
        waves = (self._admitted + 1) / self.workers
        return max(1, min(math.ceil(self.budget_seconds), math.ceil(waves * self._average)))

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                raise PoolBusy(self.name, self.retry_after())
            self._admitted += 1

    def _release(self, started: list[float]) -> None:
        with self._lock:
            self._admitted -= 1
            if started:
                self._average = 0.8 * self._average + 0.2 * (time.monotonic() - started[0])

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` in this pool under a fresh budget, with the caller's
        contextvars; PoolBusy when full. Cancelling the awaiting task cancels the budget (and
        the request, when it has not started)."""
        self._admit()
        budget = Budget(self.budget_seconds)
        started: list[float] = []

        def call() -> T:
            started.append(time.monotonic())
            budget.check()  # cancelled, or its time spent, while it waited
            with budget_scope(budget):
                return fn(*args, **kwargs)

        try:
            future: Future[T] = self._executor.submit(contextvars.copy_context().run, call)
        except BaseException:
            self._release(started)
            raise
        future.add_done_callback(lambda _: self._release(started))
        if _get_running_loop() is None:  # driven inline: wait on this thread
            with on_cancel(budget.cancel):
                return future.result()
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            budget.cancel()
            future.cancel()
            raise

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the threads (queued requests are cancelled)."""
        self._executor.shutdown(wait=wait, cancel_futures=True)


PUBLIC = "document"  # unauthenticated checks: the public licence page
VERIFY = "verify-document"  # VerifyPdf(Stream), VerifyOfd, VerifyLicense with a document
_pools: dict[str, BoundedPool] = {}


def _defaults(name: str) -> dict[str, float]:
    if name == PUBLIC:
        return {"workers": 2, "queue": 4, "budget_seconds": 20.0}
    return {"workers": default_max_workers(), "queue": 256, "budget_seconds": 20.0}


def _pool(name: str, values: dict[str, float]) -> BoundedPool:
    return BoundedPool(
        name,
        workers=int(values["workers"]),
        queue=int(values["queue"]),
        budget_seconds=values["budget_seconds"],
    )


def configure_document_pool(
    workers: int | None = None,
    queue: int | None = None,
    budget_seconds: float | None = None,
    *,
    name: str = PUBLIC,
) -> BoundedPool:
    """(Re)create one of the process's pools of document checks (:data:`PUBLIC` or
    :data:`VERIFY`; unset arguments take that pool's defaults); called at server start."""
    given = {"workers": workers, "queue": queue, "budget_seconds": budget_seconds}
    values = {**_defaults(name), **{k: v for k, v in given.items() if v is not None}}
    pool = _pool(name, values)
    with _lock:
        old = _pools.get(name)
        _pools[name] = pool
    if old is not None:
        old.shutdown(wait=False)
    return pool


def document_pool(name: str = PUBLIC) -> BoundedPool:
    """The process's pool of document checks called ``name`` (the public page's by default),
    created with its defaults on first use."""
    pool = _pools.get(name)
    if pool is not None:
        return pool
    with _lock:
        existing = _pools.get(name)
        if existing is None:
            existing = _pools[name] = _pool(name, _defaults(name))
        return existing


def _forget_in_child() -> None:
    """A forked child has none of its parent's threads: the parent's pools would queue work that
    never runs (a mutation-testing child hung on them). Forget them; the child creates its own
    on first use."""
    global _executor, _lock
    _lock = threading.Lock()
    _executor = None
    _pools.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def shutdown_document_pool(*, wait: bool = True) -> None:
    """Stop the pools of document checks (after the servers have drained)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=wait)
