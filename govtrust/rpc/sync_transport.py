"""The synchronous gRPC transport: our ``async`` servicers served by grpc's thread-pool server.

grpc's synchronous server costs far less per call than grpc.aio (docs/performance.md, "gRPC
transport": 209 against 289 µs of server CPU for a no-op call, before any work). Our servicers
and the interceptor's steps are coroutines, and stay so (the same code serves grpc.aio in tests
and tools); here each call's coroutine is *driven inline* on the transport's thread: sent
``None`` once, it runs to its end without an event loop, because every wait in the call path
blocks the thread when no loop is running (:func:`govtrust.rpc.offload.driven_inline`:
``run_sync`` runs its function right there, bounded by the pool's slot count; futures are
waited on; the bounded document pools block). A coroutine that does suspend on something else
is a programming error, reported as such (INTERNAL), never a hang.

:class:`~govtrust.rpc.interceptors.WrappingRegistrar` with ``adapt=``:func:`inline_handler`
stands in for the server while services are added: each method handler is wrapped by
:class:`~govtrust.rpc.interceptors.GovtrustInterceptor` (request id, authentication, access
rule, request ledger, error mapping, metrics, access log) and then turned into a synchronous
handler. The servicer sees a :class:`InlineContext`, the grpc.aio surface our
code uses over the synchronous context. Cancellation (client gone, deadline passed) reaches the
call's :class:`~govtrust.rpc.offload.CallCancellation`, which cancels the budgets of waits in
progress.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio

from govtrust.rpc.offload import CallCancellation, bind_cancellation


class SuspendedOnSyncTransport(RuntimeError):
    """A coroutine driven inline awaited something that needs an event loop."""


def drive(coroutine: Awaitable[Any]) -> Any:
    """Run ``coroutine`` to its end on this thread, without an event loop; its result."""
    step = coroutine.__await__()
    try:
        yielded = step.send(None)
    except StopIteration as stop:
        return stop.value
    step.close()
    raise SuspendedOnSyncTransport(
        f"a call driven by the synchronous transport waited on {yielded!r}, which needs an "
        "event loop"
    )


class InlineRequests:
    """A request stream for both kinds of servicer: ``async for`` (ours, driven inline) and
    plain ``for`` (grpc's own synchronous servicers: reflection)."""

    __slots__ = ("_iterator",)

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator

    def __aiter__(self) -> InlineRequests:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)


class InlineContext:
    """The grpc.aio ``ServicerContext`` surface our interceptor and servicers use, over the
    synchronous transport's context (anything else is passed through to it)."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def auth_context(self) -> Any:
        return self._context.auth_context()

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata(metadata)

    def trailing_metadata(self) -> Any:
        return self._context.trailing_metadata()

    def code(self) -> Any:
        return self._context.code()  # type: ignore[attr-defined]

    def cancelled(self) -> bool:
        return not self._context.is_active()

    def done(self) -> bool:
        return not self._context.is_active()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._context.add_callback(lambda: callback(self))

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing: Any = ()) -> None:
        """End the call with ``code``: raises ``grpc.aio.AbortError`` like grpc.aio does."""
        if trailing:
            self._context.set_trailing_metadata(trailing)
        try:
            self._context.abort(code, details)
        except Exception as marker:  # grpc marks the abort with a bare Exception
            raise grpc.aio.AbortError() from marker
        raise grpc.aio.AbortError()  # pragma: no cover - abort always raises

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _cancellation(context: grpc.ServicerContext) -> CallCancellation:
    """The call's cancellation, bound to it and fired when the call ends before its behaviour
    returned (:meth:`CallCancellation.finish`)."""
    cancellation = CallCancellation()
    context.add_callback(cancellation.cancel)
    bind_cancellation(cancellation)
    return cancellation


def _inline_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        cancellation = _cancellation(context)
        try:
            return drive(behaviour(request, InlineContext(context)))
        finally:
            cancellation.finish()

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        # a context of its own, as grpc.aio gives each call's task: nothing one call binds
        # (principal, request id, cancellation) is seen by the next call on this thread
        return contextvars.Context().run(call, request, context)

    return unary


def _inline_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        own = contextvars.Context()  # (see _inline_unary) every step runs in it
        cancellation = own.run(_cancellation, context)
        try:
            items = own.run(behaviour, request, InlineContext(context))
            next_item = items.__anext__
            while True:
                try:
                    item = own.run(drive, next_item())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            cancellation.finish()

    return stream


def _requests(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def with_requests(request_iterator: Iterator[Any], context: Any) -> Any:
        return behaviour(InlineRequests(request_iterator), context)

    return with_requests


def inline_handler(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A synchronous method handler driving ``handler``'s coroutine behaviour inline."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_inline_unary(handler.unary_unary), **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _requests(_inline_unary(handler.stream_unary)), **kwargs
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_inline_stream(handler.unary_stream), **kwargs)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _requests(_inline_stream(handler.stream_stream)), **kwargs
    )
