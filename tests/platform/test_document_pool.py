"""The bounded pool of document checks (issue #13): its own threads, a queue limit answered at
once, a time budget per request, and cancellation that reaches the running work."""

from __future__ import annotations

import asyncio
import threading

import pytest

from govtrust.budget import BudgetExceeded, WorkCancelled, checkpoint
from govtrust.config import ConfigError, load_settings
from govtrust.rpc.offload import (
    VERIFY,
    BoundedPool,
    PoolBusy,
    configure_document_pool,
    default_max_workers,
    document_pool,
    run_sync,
    shutdown_document_pool,
)


def _until_stopped(started: threading.Event, stopped: list[BaseException]) -> str:
    """Busy work that only ends at a checkpoint (cancelled, or its budget spent)."""
    started.set()
    try:
        while True:
            checkpoint()
    except BaseException as exc:
        stopped.append(exc)
        raise


async def _wait(event: threading.Event) -> None:
    await asyncio.get_running_loop().run_in_executor(None, event.wait, 30)
    assert event.is_set()


def test_a_full_pool_refuses_at_once_and_never_takes_the_shared_pool() -> None:
    async def scenario() -> None:
        pool = BoundedPool("document", workers=1, queue=1, budget_seconds=30)
        gate = threading.Event()
        running = threading.Event()

        def held() -> str:
            running.set()
            gate.wait(30)
            return "done"

        first = asyncio.ensure_future(pool.run(held))
        await _wait(running)
        second = asyncio.ensure_future(pool.run(lambda: "queued"))
        await asyncio.sleep(0)
        assert pool.admitted == 2
        with pytest.raises(PoolBusy) as busy:
            await pool.run(lambda: "third")
        assert busy.value.retry_after >= 1 and "GOVTRUST_DOCUMENT_QUEUE" in busy.value.message
        assert pool.admitted == 2  # the refusal took no place
        # the shared pool still answers while every document worker is busy
        assert await asyncio.wait_for(run_sync(lambda: "health"), 5) == "health"
        gate.set()
        assert await first == "done" and await second == "queued"
        assert pool.admitted == 0
        pool.shutdown()

    asyncio.run(scenario())


def test_cancelling_the_caller_stops_the_running_work() -> None:
    async def scenario() -> None:
        pool = BoundedPool("document", workers=1, queue=0, budget_seconds=60)
        started = threading.Event()
        stopped: list[BaseException] = []
        call = asyncio.ensure_future(pool.run(_until_stopped, started, stopped))
        await _wait(started)
        call.cancel()  # what grpc.aio does to a cancelled call, and the page on a disconnect
        with pytest.raises(asyncio.CancelledError):
            await call
        while pool.admitted:  # the worker is released once the work reached its checkpoint
            await asyncio.sleep(0.01)
        assert len(stopped) == 1 and isinstance(stopped[0], WorkCancelled)
        assert await pool.run(lambda: "next") == "next"  # the worker is free again
        pool.shutdown()

    asyncio.run(scenario())


def test_the_budget_bounds_a_request() -> None:
    async def scenario() -> None:
        pool = BoundedPool("document", workers=1, queue=0, budget_seconds=0.3)
        started = threading.Event()
        stopped: list[BaseException] = []
        with pytest.raises(BudgetExceeded, match=r"0\.3 s"):
            await asyncio.wait_for(pool.run(_until_stopped, started, stopped), 20)
        assert pool.admitted == 0 and isinstance(stopped[0], BudgetExceeded)
        pool.shutdown()

    asyncio.run(scenario())


def test_document_settings_are_validated() -> None:
    settings = load_settings(
        env={"GOVTRUST_DOCUMENT_WORKERS": "3", "GOVTRUST_PDF_MAX_REVISIONS": "7"}
    )
    assert settings.document_workers == 3 and settings.pdf_max_revisions == 7
    assert settings.document_queue == 4 and settings.document_budget_seconds == 20
    assert (settings.verify_document_workers, settings.verify_document_queue) == (0, 256)
    # VerifyPdf's pool (authenticated callers) is separate and much longer than the public one
    verify = configure_document_pool(name=VERIFY)
    assert verify.workers == default_max_workers() and verify.queue == 256
    assert document_pool(VERIFY) is verify and document_pool().queue == 4
    shutdown_document_pool()
    assert "GOVTRUST_VERIFY_DOCUMENT_QUEUE" in PoolBusy(VERIFY, 1).message
    with pytest.raises(ConfigError, match="document_workers: 0 is below 1"):
        load_settings(env={"GOVTRUST_DOCUMENT_WORKERS": "0"})
    with pytest.raises(ConfigError, match="pdf_max_signatures"):
        load_settings(flags={"pdf_max_signatures": 0}, env={})


def test_a_forked_child_gets_pools_of_its_own() -> None:
    """The parent's pools have no threads in a forked child; the child must not queue work on
    them (it would wait forever) but make its own."""
    import os

    from govtrust.rpc.offload import document_pool, get_executor, run_sync

    get_executor()
    document_pool()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: both pools must run work
        try:
            done = asyncio.run(asyncio.wait_for(run_sync(lambda: 41 + 1), 10))
            checked = asyncio.run(asyncio.wait_for(document_pool().run(lambda: 7), 10))
            ok = done == 42 and checked == 7
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok" and status == 0
