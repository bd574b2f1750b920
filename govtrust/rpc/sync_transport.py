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

A drain ends a call still running at the end of its grace period with a status of its own
(:meth:`InlineContext.end_now`, UNAVAILABLE) while the call's thread works on: grpc's
synchronous server sends a status only when the behaviour returns, so this reaches into its
call state (``grpc._server``'s ``_abort``, under the call's condition, as grpc's own threads
do). Where a grpc release no longer has those internals, ``end_now`` declines and the call
ends as before (grpc's cancellation at the end of ``server.stop``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
from grpc import _common as grpc_common
from grpc import _server as grpc_server

from govtrust.rpc.offload import CallCancellation, bind_cancellation

log = logging.getLogger("govtrust.rpc")
# orders a drain's end_now against a behaviour's return (one lock for every call: taken once per
# call, for a moment, and cheaper than a lock of each call's own)
_ending = threading.Lock()


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

    __slots__ = ("_closed", "_context", "_ended")

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self._closed = False  # the behaviour returned: grpc sends its status from now on
        self._ended: grpc.RpcError | None = None  # end_now sent the status

    def end_now(
        self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, Any], ...]
    ) -> bool:
        """Send ``code`` as the call's status now, from any thread, while its behaviour still
        runs; whether it was sent (not when the behaviour has returned, the call has its
        status, the client is gone, or grpc's internals are not the ones known here). The
        behaviour's own answer is then dropped (:meth:`close`)."""
        context = self._context
        state = getattr(context, "_state", None)
        event = getattr(context, "_rpc_event", None)
        abort = getattr(grpc_server, "_abort", None)
        cancelled = getattr(grpc_server, "_CANCELLED", None)
        if state is None or event is None or abort is None or cancelled is None:
            log.warning("cannot end a call early on this grpc release; grpc will cancel it")
            return False
        with _ending:
            if self._closed or self._ended is not None:
                return False
            with state.condition:
                if state.statused or state.aborted or state.client is cancelled:
                    return False
                state.trailing_metadata = trailing
                abort(
                    state,
                    event.call,
                    grpc_common.STATUS_CODE_TO_CYGRPC_STATUS_CODE[code],
                    details.encode("utf-8"),
                )
                # an error grpc knows as its own: raised by the behaviour's wrapper once it
                # returns, it makes grpc send nothing more for the call
                marker = grpc.RpcError()
                state.rpc_errors.append(marker)
            self._ended = marker
            return True

    def close(self) -> grpc.RpcError | None:
        """The behaviour returned: from now on :meth:`end_now` declines. The error to raise in
        place of its answer when the call was ended already, else None."""
        with _ending:
            self._closed = True
            return self._ended

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
        """End the call with ``code``: raises ``grpc.aio.AbortError`` like grpc.aio does
        (and only that when a drain ended the call already; once the behaviour aborted, a
        drain leaves the call to its own status)."""
        with _ending:
            if self._ended is not None:  # a drain answered the call already
                raise grpc.aio.AbortError()
            self._closed = True  # the call's status is its own from now: end_now declines
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
        inline = InlineContext(context)
        try:
            response = drive(behaviour(request, inline))
        except BaseException:
            ended = inline.close()
            if ended is not None:
                raise ended from None
            raise
        finally:
            cancellation.finish()
        ended = inline.close()
        if ended is not None:
            raise ended
        return response

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        # a context of its own, as grpc.aio gives each call's task: nothing one call binds
        # (principal, request id, cancellation) is seen by the next call on this thread
        return contextvars.Context().run(call, request, context)

    return unary


def _inline_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        own = contextvars.Context()  # (see _inline_unary) every step runs in it
        cancellation = own.run(_cancellation, context)
        inline = InlineContext(context)
        try:
            items = own.run(behaviour, request, inline)
            next_item = items.__anext__
            while True:
                try:
                    item = own.run(drive, next_item())
                except StopAsyncIteration:
                    break
                yield item
        except BaseException:
            ended = inline.close()
            if ended is not None:
                raise ended from None
            raise
        finally:
            cancellation.finish()
        ended = inline.close()
        if ended is not None:
            raise ended

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
