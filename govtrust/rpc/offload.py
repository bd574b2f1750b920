"""Run synchronous domain code off the event loop, in one bounded thread pool per process.

Domain code (SQLAlchemy sessions, key-store signing, PDF work) is synchronous; servicers and
routes are ``async``. ``await run_sync(fn, *args)`` runs ``fn`` in the pool with the caller's
context variables (principal, request id), so the loop keeps serving other calls meanwhile.
The pool is bounded to roughly the database pool size: more threads would only queue on
connections.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

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


async def run_sync(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` run in the bounded pool, with the caller's contextvars."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(_executor or get_executor(), call)
