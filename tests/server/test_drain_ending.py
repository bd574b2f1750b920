"""A drain ends the calls still running when its grace is over with UNAVAILABLE, on both gRPC
transports (:meth:`GovtrustInterceptor.end_running`): the client reads "the server is shutting
down; retry" with its request id and the SHUTTING_DOWN reason — not grpc's own "Cancelling all
calls" reset, which a proxy may pass on as CANCELLED — while the call's work runs on to its
end (its answer is dropped; a mutating call's lands in the request ledger). A call that
finishes first is untouched; a health watch on grpc.aio is cancelled, not left waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from govtrust.rpc.interceptors import GovtrustInterceptor, WrappingRegistrar
from govtrust.rpc.offload import run_sync
from govtrust.rpc.status import REQUEST_ID_KEY
from govtrust.rpc.sync_transport import inline_handler
from tests.server.serving import loopback_interceptor

SERVICE = "test.Draining"
WAIT = 10.0  # generous bound on every event a test waits for (a hang fails, not blocks)


class _Work:
    """A call's work that runs until released, on a thread (as domain work does)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.stream_closed = threading.Event()

    def run(self) -> bytes:
        self.started.set()
        assert self.release.wait(WAIT), "never released"
        self.finished.set()
        return b"done"

    async def blocks(self, request: bytes, context: Any) -> bytes:
        return await run_sync(self.run)

    async def quick(self, request: bytes, context: Any) -> bytes:
        return request.upper()

    async def aborts_slowly(self, request: bytes, context: Any) -> bytes:
        """Aborts with its own status, then is slow to return (still running)."""
        try:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        except grpc.aio.AbortError:
            self.started.set()
            await run_sync(self.release.wait, WAIT)
            raise
        raise AssertionError("abort returned")

    async def watches(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        """A stream that waits on the loop between items, as the health watch does."""
        try:
            yield b"first"
            self.started.set()
            await asyncio.sleep(3600)
            yield b"never"
        finally:
            self.stream_closed.set()

    def handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Blocks": grpc.unary_unary_rpc_method_handler(self.blocks),
                "Quick": grpc.unary_unary_rpc_method_handler(self.quick),
                "AbortsSlowly": grpc.unary_unary_rpc_method_handler(self.aborts_slowly),
                "Watches": grpc.unary_stream_rpc_method_handler(self.watches),
            },
        )


@contextlib.asynccontextmanager
async def _served(
    transport: str, work: _Work
) -> AsyncIterator[tuple[GovtrustInterceptor, grpc.Channel]]:
    """``work``'s handlers behind the production interceptor on ``transport``, and a channel
    to them; the work released and the server stopped at the end."""
    interceptor = loopback_interceptor()
    server: Any
    if transport == "sync":
        server = grpc.server(ThreadPoolExecutor(4, thread_name_prefix="drain-test"))
        WrappingRegistrar(server, interceptor, adapt=inline_handler).add_generic_rpc_handlers(
            (work.handlers(),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
    else:
        server = grpc.aio.server()
        interceptor.registrar(server).add_generic_rpc_handlers((work.handlers(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield interceptor, channel
    finally:
        work.release.set()
        if isinstance(server, grpc.aio.Server):
            await server.stop(None)
        else:
            await asyncio.to_thread(lambda: server.stop(None).wait())


def _nothing_more_sent(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """grpc was not asked for a second status: no "abort already called", no failed batch."""
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "Traceback" not in capfd.readouterr().err


def _unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{SERVICE}/{method}", None, None)


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_a_running_call_is_answered_unavailable_and_its_work_runs_on(
    transport: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    work = _Work()
    caplog.set_level(logging.WARNING)

    async def scenario() -> None:
        async with _served(transport, work) as (interceptor, channel):
            quick = _unary(channel, "Quick")
            assert await asyncio.to_thread(quick, b"ok") == b"OK"
            assert await interceptor.end_running() == 0  # nothing running: nothing ended
            call: Any = _unary(channel, "Blocks").future(
                b"", metadata=((REQUEST_ID_KEY, "req-drained"),), timeout=WAIT
            )
            assert await asyncio.to_thread(work.started.wait, WAIT)

            assert await interceptor.end_running() == 1
            error = cast(grpc.Call, await asyncio.to_thread(call.exception, WAIT))
            assert error is not None, "the call was not ended"
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            assert error.details() == "the server is shutting down; retry"
            assert dict(error.trailing_metadata() or ())[REQUEST_ID_KEY] == "req-drained"
            status = rpc_status.from_call(error)
            assert status is not None
            info = error_details_pb2.ErrorInfo()
            assert any(d.Unpack(info) for d in status.details)
            assert info.reason == "SHUTTING_DOWN"

            # answered, while the work still runs; released, it ends and nothing else is
            # sent (a second status would be an error in grpc's log, not a change here)
            assert not work.finished.is_set()
            assert interceptor.running == 1
            assert await interceptor.end_running() == 0  # ended once
            work.release.set()
            assert await interceptor.wait_idle(WAIT)
            assert work.finished.is_set()

            # the server serves on (a drain stops it; ending calls alone does not)
            assert await asyncio.to_thread(quick, b"still") == b"STILL"

    asyncio.run(scenario())
    _nothing_more_sent(caplog, capfd)


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_a_call_that_aborted_itself_keeps_its_own_status(
    transport: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The behaviour aborted with its own status and is still unwinding when the drain ends
    the running calls: the drain leaves it alone — the client gets the behaviour's status,
    grpc is not asked for a second one."""
    work = _Work()
    caplog.set_level(logging.WARNING)

    async def scenario() -> None:
        async with _served(transport, work) as (interceptor, channel):
            call: Any = _unary(channel, "AbortsSlowly").future(b"", timeout=WAIT)
            assert await asyncio.to_thread(work.started.wait, WAIT)
            assert await interceptor.end_running() == 0
            work.release.set()
            error = cast(grpc.Call, await asyncio.to_thread(call.exception, WAIT))
            assert error is not None
            assert error.code() is grpc.StatusCode.NOT_FOUND
            assert error.details() == "no such thing"
            assert await interceptor.wait_idle(WAIT)

    asyncio.run(scenario())
    _nothing_more_sent(caplog, capfd)


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_a_call_that_finished_keeps_its_answer(transport: str) -> None:
    work = _Work()

    async def scenario() -> None:
        async with _served(transport, work) as (interceptor, channel):
            call: Any = _unary(channel, "Blocks").future(b"", timeout=WAIT)
            assert await asyncio.to_thread(work.started.wait, WAIT)
            work.release.set()
            assert await asyncio.to_thread(call.result, WAIT) == b"done"
            assert await interceptor.wait_idle(WAIT)
            assert await interceptor.end_running() == 0

    asyncio.run(scenario())


def test_a_stream_waiting_on_the_loop_is_ended_and_cancelled_on_aio() -> None:
    work = _Work()

    async def scenario() -> None:
        async with _served("aio", work) as (interceptor, channel):
            stream = channel.unary_stream(f"/{SERVICE}/Watches", None, None)(b"", timeout=WAIT)
            received: list[bytes] = []

            def read() -> grpc.RpcError | None:
                try:
                    for item in cast(Iterator[bytes], stream):
                        received.append(item)
                except grpc.RpcError as exc:
                    return exc
                return None

            reader = asyncio.ensure_future(asyncio.to_thread(read))
            assert await asyncio.to_thread(work.started.wait, WAIT)
            assert await interceptor.end_running() == 1
            error = cast(grpc.Call, await asyncio.wait_for(reader, WAIT))
            assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
            assert received == [b"first"]
            assert await interceptor.wait_idle(WAIT)  # not left waiting for an hour
            assert work.stream_closed.is_set()

    asyncio.run(scenario())
