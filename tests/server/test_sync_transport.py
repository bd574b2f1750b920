"""The synchronous gRPC transport (govtrust.rpc.sync_transport): our ``async`` servicers and the
interceptor's steps driven inline on grpc's thread-pool server — answers, mapped errors with
their details, request ids, per-call context isolation, streams both ways, cancellation reaching
a wait in progress, and a servicer that would suspend on an event loop refused loudly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import grpc
import pytest
from grpc_status import rpc_status

from govtrust.budget import WorkCancelled, checkpoint
from govtrust.errors import NotFound
from govtrust.principal import LOCAL_ADMIN
from govtrust.rpc.context import current_principal, current_request_id
from govtrust.rpc.interceptors import WrappingRegistrar
from govtrust.rpc.offload import BoundedPool, driven_inline, run_sync, wait_for_future
from govtrust.rpc.status import REQUEST_ID_KEY
from govtrust.rpc.sync_transport import SuspendedOnSyncTransport, drive, inline_handler
from tests.server.serving import loopback_interceptor

SERVICE = "test.Inline"
_seen_request_ids: list[str | None] = []
_released = threading.Event()
_waiting = threading.Event()
_pool_cancelled = threading.Event()


async def _echo(request: bytes, context: Any) -> bytes:
    _seen_request_ids.append(current_request_id())
    inline = await run_sync(driven_inline)  # run right here, on the transport's thread
    thread = await run_sync(lambda: threading.current_thread().name)
    return b"|".join(
        [request, current_principal().actor.encode(), str(inline).encode(), thread.encode()]
    )


async def _missing(request: bytes, context: Any) -> bytes:
    raise NotFound("no such thing: " + request.decode())


async def _sleeps(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(0.01)  # needs an event loop: a programming error on this transport
    return b"never"


async def _waits_in_pool(request: bytes, context: Any) -> bytes:
    pool = BoundedPool("inline-test", workers=1, queue=0, budget_seconds=30)

    def blocked() -> bytes:
        _waiting.set()
        while not _released.wait(0.01):
            try:
                checkpoint()
            except WorkCancelled:
                _pool_cancelled.set()
                raise
        return b"released"

    try:
        return await pool.run(blocked)
    finally:
        pool.shutdown(wait=False)


async def _counts(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(int(request.decode())):
        yield (await run_sync(str, i)).encode()


async def _sums(requests: AsyncIterator[bytes], context: Any) -> bytes:
    total = 0
    async for message in requests:
        total += int(message.decode())
    return str(total).encode()


async def _future(request: bytes, context: Any) -> bytes:
    with ThreadPoolExecutor(1) as executor:
        return await wait_for_future(executor.submit(lambda: request.upper()))


def _handlers() -> grpc.GenericRpcHandler[Any, Any]:
    unary = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": unary(_echo),
            "Missing": unary(_missing),
            "Sleeps": unary(_sleeps),
            "WaitsInPool": unary(_waits_in_pool),
            "Future": unary(_future),
            "Counts": grpc.unary_stream_rpc_method_handler(_counts),
            "Sums": grpc.stream_unary_rpc_method_handler(_sums),
        },
    )


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    interceptor = loopback_interceptor()
    server = grpc.server(ThreadPoolExecutor(4, thread_name_prefix="inline-test"))
    registrar = WrappingRegistrar(server, interceptor, adapt=inline_handler)
    registrar.add_generic_rpc_handlers((_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            yield opened
    finally:
        server.stop(None).wait()


def _unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{SERVICE}/{method}", None, None)


def test_a_servicer_coroutine_runs_inline_on_the_transport_thread(channel: grpc.Channel) -> None:
    answer, call = _unary(channel, "Echo").with_call(b"hello")
    request, actor, inline, thread = answer.split(b"|")
    assert (request, actor, inline) == (b"hello", LOCAL_ADMIN.actor.encode(), b"True")
    assert thread.startswith(b"inline-test")  # no hop to the run_sync pool
    trailing = dict(call.trailing_metadata() or ())
    assert len(trailing[REQUEST_ID_KEY]) == 32


def test_each_call_has_its_own_context(channel: grpc.Channel) -> None:
    _seen_request_ids.clear()
    echo = _unary(channel, "Echo")
    echo(b"a", metadata=((REQUEST_ID_KEY, "first-call"),))
    echo(b"b")
    assert _seen_request_ids[0] == "first-call"
    assert _seen_request_ids[1] not in (None, "first-call")


def test_a_domain_error_is_mapped_with_its_details(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _unary(channel, "Missing")(b"x-1", metadata=((REQUEST_ID_KEY, "req-missing"),))
    error = cast(grpc.Call, caught.value)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "no such thing: x-1" in (error.details() or "")
    status = rpc_status.from_call(error)
    assert status is not None and status.details  # google.rpc details travel too
    assert dict(error.trailing_metadata() or ())[REQUEST_ID_KEY] == "req-missing"


def test_a_coroutine_that_needs_an_event_loop_is_an_internal_error(
    channel: grpc.Channel,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _unary(channel, "Sleeps")(b"")
    assert cast(grpc.Call, caught.value).code() is grpc.StatusCode.INTERNAL


def test_drive_refuses_a_coroutine_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)  # a bare yield, as any loop-bound future's await

    with pytest.raises(SuspendedOnSyncTransport):
        drive(suspends())

    async def plain() -> int:
        return 7

    assert drive(plain()) == 7


def test_a_concurrent_future_is_waited_for_on_the_thread(channel: grpc.Channel) -> None:
    assert _unary(channel, "Future")(b"abc") == b"ABC"


def test_streams_both_ways(channel: grpc.Channel) -> None:
    counts = channel.unary_stream(f"/{SERVICE}/Counts", None, None)
    assert list(counts(b"4")) == [b"0", b"1", b"2", b"3"]
    sums = channel.stream_unary(f"/{SERVICE}/Sums", None, None)
    assert sums(iter([b"1", b"2", b"39"])) == b"42"


def test_a_cancelled_call_cancels_the_budget_of_its_wait(channel: grpc.Channel) -> None:
    _released.clear()
    _waiting.clear()
    _pool_cancelled.clear()
    future = _unary(channel, "WaitsInPool").future(b"")
    assert _waiting.wait(10)
    future.cancel()
    try:
        assert _pool_cancelled.wait(10), "the budget was not cancelled with the call"
    finally:
        _released.set()
