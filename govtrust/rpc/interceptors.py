"""The server interceptor every gRPC call goes through.

A ``grpc.aio.ServerInterceptor`` only sees the method name and invocation metadata; it cannot
catch what a servicer raises, nor read the TLS auth context. So this interceptor *wraps the
method handler's behaviour*: for every registered method it returns a new handler whose
behaviour, in order,

1. takes the caller's ``x-request-id`` (or mints one) and returns it in trailing metadata;
2. authenticates the caller (:class:`~govtrust.rpc.auth.Authenticator`) unless the method is
   public (health checking, reflection) and binds principal and request id in contextvars;
   then, given an ``authorise`` hook (:mod:`govtrust.rpc.access`), refuses a caller the
   method's declared rule does not admit, before the servicer sees the request;
3. calls the servicer: ``async`` behaviours directly, synchronous ones through ``run_sync`` so
   they never block the loop (request-streaming behaviours must be ``async``); a unary call
   whose request message has a ``request_id`` field (the proto's mark of a mutating RPC) and
   sets it goes through the request ledger (:mod:`govtrust.idempotency`): a retry gets the
   first answer back instead of acting twice (rebuilt from the call's recorded effect when its
   process died before storing it, or re-produced from the request bound to that effect, where
   the method declares how: :mod:`govtrust.rpc.answers`);
4. maps any exception to a status with ``google.rpc`` details (:mod:`govtrust.rpc.status`);
   unexpected ones are logged with their traceback and become a generic INTERNAL;
5. counts the call in Prometheus and writes one JSON access line.

One interceptor rather than a chain, because steps 4 and 5 must agree on the final code and the
order (map, then observe) is easiest to see and keep right in one place.

It also knows the calls running at any moment, so that a drain can end the ones still running
when its grace period is over with UNAVAILABLE (:meth:`GovtrustInterceptor.end_running`: retry
elsewhere) instead of leaving them to grpc's own cancellation at the end of ``server.stop``,
whose reset a proxy may pass on as CANCELLED or UNKNOWN (docs/operations.md, "Draining").
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
from google.protobuf import descriptor_pool, message_factory
from grpc_status import rpc_status

from govtrust.errors import ShuttingDown
from govtrust.idempotency import (
    Claim,
    Rebuild,
    RequestKey,
    RequestLedger,
    acting_on,
    check_request_id,
    request_digest,
)
from govtrust.observability.logs import access_enabled, access_log
from govtrust.observability.metrics import Metrics
from govtrust.principal import Principal
from govtrust.rpc.access import Authorise
from govtrust.rpc.answers import rebuilder
from govtrust.rpc.auth import Authenticator
from govtrust.rpc.context import (
    accept_request_id,
    bind_principal,
    bind_request_id,
    current_principal_or_none,
)
from govtrust.rpc.offload import driven_inline, run_sync
from govtrust.rpc.status import REQUEST_ID_KEY, MappedError, classify, to_status_proto
from govtrust.rpc.sync_transport import InlineContext

log = logging.getLogger("govtrust.rpc")

PUBLIC_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_SENTINEL = object()
_OK = grpc.StatusCode.OK
_perf_counter = time.perf_counter
# The auth context of a call on a server that asks for no client certificate.
_NO_TLS: dict[str, list[bytes]] = {}
_IDLE_POLL_SECONDS = 0.01


class _Method:
    """What the interceptor knows about one method, worked out once (not on every call).

    ``keyed_response`` is the response class of a method whose requests carry a
    ``request_id`` the request ledger keys (None for every other method)."""

    __slots__ = ("keyed_response", "method", "name", "operation", "public", "service")

    def __init__(
        self, method: str, public_prefixes: tuple[str, ...], self_keyed: frozenset[str]
    ) -> None:
        self.method = method
        self.public = method.startswith(public_prefixes)
        self.service, _, self.name = method.lstrip("/").partition("/")
        self.operation = f"{self.service}.{self.name}"
        self.keyed_response: type[Any] | None = None
        if not self.public and method not in self_keyed:
            self.keyed_response = _keyed_response(self.operation)


def _keyed_response(operation: str) -> type[Any] | None:
    """The response class of ``operation`` when its request message has a string
    ``request_id`` field; None otherwise (or when the method is not in the descriptor pool)."""
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(operation)
    except KeyError:
        return None
    field = descriptor.input_type.fields_by_name.get("request_id")
    if field is None or field.type != field.TYPE_STRING:
        return None
    return message_factory.GetMessageClass(descriptor.output_type)


async def _run(
    behaviour: Callable[..., Any],
    is_async: bool,
    request: Any,
    context: grpc.aio.ServicerContext[Any, Any],
) -> Any:
    """Call a unary behaviour: ``async`` ones directly, others off the loop."""
    if is_async:
        return await behaviour(request, context)
    response = await run_sync(behaviour, request, context)
    if inspect.isawaitable(response):
        response = await response
    return response


async def _acting(
    claim: Claim,
    behaviour: Callable[..., Any],
    is_async: bool,
    request: Any,
    context: grpc.aio.ServicerContext[Any, Any],
) -> Any:
    with acting_on(claim):
        return await _run(behaviour, is_async, request, context)


# what still settles a claim after its call ended: the call's work, or the ledger's wait that
# may yet take a claim, run on (detached), and the late finish or abandon; a drain waits for
# them all (:meth:`GovtrustInterceptor.wait_idle`)
_SETTLING: set[asyncio.Future[Any]] = set()


def _detached(task: asyncio.Future[Any]) -> None:
    """Hold ``task`` in ``_SETTLING`` until it ends (its other callbacks added before this)."""
    _SETTLING.add(task)
    task.add_done_callback(_SETTLING.discard)


async def _settled_by_its_work(ledger: RequestLedger, claim: Claim, work: Awaitable[Any]) -> Any:
    """The answer of a claimed call's ``work``, run as a task of its own that the call's
    cancellation does not stop.

    A call is cancelled when its deadline passes or its client goes, but its work may be in a
    thread (``run_sync``) that goes on and still takes effect: freeing the claim then would let
    a retry act beside it (the cluster soak saw a signature recorded twice so). So the claim is
    settled by the work's own end: its answer stored (a retry gets it), or the claim freed once
    the work failed. A failure of the call itself frees the claim at once, as before."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # The work may have ended already — with its answer, which the cancellation of the
        # call merely kept from being returned — or run on: either way its end settles the
        # claim (a done task's callback runs at the loop's next turn).
        task.add_done_callback(functools.partial(_settle_later, ledger, claim))
        _detached(task)
        raise
    except BaseException:
        await run_sync(ledger.abandon, claim)
        raise


async def _claimed(
    ledger: RequestLedger, key: RequestKey, digest: str, rebuild: Rebuild | None
) -> Claim | bytes:
    """:meth:`RequestLedger.wait_for_answer` off the loop. Its thread is not stopped by the
    call's cancellation and may still take the claim afterwards: a claim taken for a call that
    has gone is freed at once (else the key would read "in progress" until it went stale)."""
    task = asyncio.ensure_future(run_sync(ledger.wait_for_answer, key, digest, rebuild))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(functools.partial(_free_if_claimed, ledger))
        _detached(task)
        raise


def _free_if_claimed(ledger: RequestLedger, begun: asyncio.Future[Claim | bytes]) -> None:
    if begun.cancelled() or begun.exception() is not None:
        return
    claim = begun.result()
    if isinstance(claim, Claim):
        _settling(run_sync(ledger.abandon, claim))


def _settling(settle: Awaitable[None]) -> None:
    """Run ``settle`` (a claim's late finish or abandon) to its end, held in ``_SETTLING``."""
    task = asyncio.ensure_future(settle)
    task.add_done_callback(_settled)
    _detached(task)


def _settle_later(ledger: RequestLedger, claim: Claim, work: asyncio.Future[Any]) -> None:
    """Store the answer of ``work`` that ended after its call did, or free its claim."""
    if work.cancelled() or work.exception() is not None:
        _settling(run_sync(ledger.abandon, claim))
    else:
        answer = work.result().SerializeToString(deterministic=True)
        _settling(run_sync(ledger.finish, claim, answer))


def _settled(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:  # the ledger retries in the
        log.info("a late claim settlement failed: %s", task.exception())  # background itself


class _Call:
    """Book-keeping of one call: what the access line and the metrics report."""

    __slots__ = (
        "code",
        "context",
        "ended",
        "finished",
        "principal",
        "request_id",
        "spec",
        "started",
        "task",
        "trailing",
    )

    def __init__(
        self, spec: _Method, request_id: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        self.spec = spec
        self.request_id = request_id
        self.context = context
        self.trailing = ((REQUEST_ID_KEY, request_id),)  # what _begin sets as trailing metadata
        self.started = _perf_counter()
        self.principal: Principal | None = None
        self.code = _OK
        self.finished = False
        self.ended = False  # answered UNAVAILABLE by a drain while its behaviour still ran
        self.task: asyncio.Task[Any] | None = None  # a stream's task on grpc.aio

    @property
    def method(self) -> str:
        return self.spec.method


class GovtrustInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Request id, authentication, error mapping, metrics and access logging for every call.

    The wrapped handler of a method is built once and reused while the server hands out the
    same original handler (generated services always do), so a call allocates no closures or
    handler objects of its own.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics,
        *,
        public_prefixes: tuple[str, ...] = PUBLIC_METHOD_PREFIXES,
        authorise: Authorise | None = None,
        ledger: RequestLedger | None = None,
        self_keyed: frozenset[str] = frozenset(),
    ) -> None:
        """``ledger`` makes the calls that carry a ``request_id`` idempotent; ``self_keyed``
        names the methods whose domain keys ``request_id`` itself (IssueLicense)."""
        self.authenticator = authenticator
        self.metrics = metrics
        self.public_prefixes = public_prefixes
        self.authorise = authorise
        self.ledger = ledger
        self.self_keyed = self_keyed
        self._wrapped: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}
        # the calls whose behaviour runs (set.add and discard are atomic: no lock, on either
        # transport's threads)
        self._running: set[_Call] = set()
        # when the last call of a caller (not health checking, not reflection) arrived,
        # perf_counter: a draining process stops once callers have stopped coming
        self.last_arrival = 0.0

    @property
    def running(self) -> int:
        """How many calls' behaviours are running (those a drain ended included), and works
        of cancelled calls still settling their claims."""
        return len(self._running) + len(_SETTLING)

    async def end_running(self) -> int:
        """End every call still running with UNAVAILABLE (:class:`ShuttingDown`) now, from the
        drain (on the event loop, whichever the transport); how many were ended.

        Only the answer is sent: a unary call's behaviour runs on to its end (a thread cannot
        be stopped, and a task cancelled in ``await run_sync(...)`` would leave its thread
        working while the request ledger freed its key). A mutating call's effect and answer
        then land under its ``request_id`` as usual, and the client's retry gets that answer
        (or "in progress", UNAVAILABLE, while the work still runs). A stream's behaviour (a
        health watch, reflection: none mutates) is cancelled on grpc.aio, where it would wait
        on; on the synchronous transport grpc closes it once the call has its status."""
        ended = 0
        for call in tuple(self._running):
            if call.finished or call.ended:  # its own status is on its way
                continue
            mapped = classify(ShuttingDown(), call.request_id)
            status = rpc_status.to_status(to_status_proto(mapped, call.request_id))
            trailing = (*status.trailing_metadata, (REQUEST_ID_KEY, call.request_id))
            # Ended from now: should the behaviour fail while grpc.aio sends this status, its
            # failure is not answered a second time (grpc: "Abort already called").
            code, call.ended, call.code = call.code, True, status.code
            if await _end_call(call.context, status.code, status.details, trailing):
                self._finish(call)
                ended += 1
                if call.task is not None:
                    call.task.cancel()
            else:
                call.ended, call.code = False, code
        return ended

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no call's behaviour runs and no cancelled
        call's work is still settling its claim; whether so. (The drain's last step: the work
        of calls it ended, or that their clients left, finishes and stores its answer.)"""
        deadline = time.monotonic() + timeout
        while self._running or _SETTLING:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_IDLE_POLL_SECONDS)
        return True

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED itself
            return handler
        return self.wrapped_handler(handler, handler_call_details.method)

    def wrapped_handler(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` of ``method`` wrapped in this interceptor's steps (built once per
        handler, then reused)."""
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def registrar(self, server: grpc.aio.Server) -> WrappingRegistrar:
        """What services are added to instead of ``server`` so that every handler is wrapped
        when it is registered — the serving process's way (see :class:`WrappingRegistrar`)."""
        return WrappingRegistrar(server, self)

    # --- wrapping ---------------------------------------------------------------------------

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        spec = _Method(method, self.public_prefixes, self.self_keyed)
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            behaviour = handler.unary_unary
            if spec.keyed_response is not None and self.ledger is not None:
                behaviour = self._keyed(behaviour, spec, self.ledger)
            return grpc.unary_unary_rpc_method_handler(
                self._unary_response(behaviour, spec), **kwargs
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary_response(handler.stream_unary, spec), **kwargs
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream_response(handler.unary_stream, spec), **kwargs
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._stream_response(handler.stream_stream, spec), **kwargs
        )

    def _unary_response(self, behaviour: Callable[..., Any], spec: _Method) -> Callable[..., Any]:
        is_async = inspect.iscoroutinefunction(behaviour)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = self._begin(spec, context)
            if call.principal is None and not spec.public:
                await self._authenticate_slowly(call, context)
            running = self._running
            running.add(call)
            try:
                self._admit(call)
                if is_async:
                    response = await behaviour(request, context)
                else:
                    response = await run_sync(behaviour, request, context)
                    if inspect.isawaitable(response):
                        response = await response
                if call.ended:
                    return None  # answered already (the transport sends nothing more)
                self._succeeded(call, context)
                return response
            except BaseException as exc:  # noqa: BLE001 - every outcome must be mapped
                if call.ended:
                    return _after_ending(call, exc)
                await self._failed(call, context, exc)
            finally:
                running.discard(call)
                self._finish(call)

        return wrapped

    def _keyed(
        self, behaviour: Callable[..., Any], spec: _Method, ledger: RequestLedger
    ) -> Callable[..., Any]:
        """``behaviour`` under the request ledger: a request with a ``request_id`` is claimed
        before it runs and answered from the ledger when it is a retry."""
        is_async = inspect.iscoroutinefunction(behaviour)
        response_type = spec.keyed_response
        assert response_type is not None
        rebuild_for = rebuilder(behaviour)

        async def keyed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            principal = current_principal_or_none()
            if not request.request_id or principal is None:
                return await _run(behaviour, is_async, request, context)
            key = RequestKey(spec.operation, principal.actor, check_request_id(request.request_id))
            canonical = type(request)()
            canonical.CopyFrom(request)
            canonical.ClearField("request_id")
            digest = request_digest(canonical.SerializeToString(deterministic=True))
            rebuild = None if rebuild_for is None else rebuild_for(request)
            begun = await _claimed(ledger, key, digest, rebuild)
            if not isinstance(begun, Claim):
                return response_type.FromString(begun)
            if driven_inline():  # the work runs on this very thread: ended when it returns
                try:
                    with acting_on(begun):
                        response = await _run(behaviour, is_async, request, context)
                except BaseException:
                    await run_sync(ledger.abandon, begun)
                    raise
            else:
                response = await _settled_by_its_work(
                    ledger, begun, _acting(begun, behaviour, is_async, request, context)
                )
            await run_sync(ledger.finish, begun, response.SerializeToString(deterministic=True))
            return response

        return keyed

    def _stream_response(self, behaviour: Callable[..., Any], spec: _Method) -> Callable[..., Any]:
        is_async = inspect.isasyncgenfunction(behaviour) or inspect.iscoroutinefunction(behaviour)

        async def wrapped(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            call = self._begin(spec, context)
            if call.principal is None and not spec.public:
                await self._authenticate_slowly(call, context)
            if not driven_inline():
                call.task = asyncio.current_task()
            running = self._running
            running.add(call)
            try:
                self._admit(call)
                if is_async:
                    result = behaviour(request, context)
                else:
                    result = await run_sync(behaviour, request, context)
                if inspect.isawaitable(result):  # writes with context.write(), returns None
                    await result
                elif hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                elif result is not None and driven_inline():  # on the transport's own thread
                    for item in result:  # (a health watch waits here without a domain slot)
                        yield item
                elif result is not None:  # a synchronous iterator: advance it off the loop
                    iterator: Iterator[Any] = iter(result)
                    while (item := await run_sync(next, iterator, _SENTINEL)) is not _SENTINEL:
                        yield item
                if not call.ended:
                    self._succeeded(call, context)
            except BaseException as exc:  # noqa: BLE001 - every outcome must be mapped
                if call.ended:
                    _after_ending(call, exc)
                    return
                await self._failed(call, context, exc)
            finally:
                running.discard(call)
                self._finish(call)

        return wrapped

    # --- the steps --------------------------------------------------------------------------

    def _begin(self, spec: _Method, context: grpc.aio.ServicerContext[Any, Any]) -> _Call:
        """Request id and, when no resolver has to run, the principal (no awaiting)."""
        metadata = context.invocation_metadata() or ()
        candidate: str | None = None
        for key, value in metadata:
            if key == REQUEST_ID_KEY:  # gRPC delivers metadata keys in lower case
                candidate = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                break
        call = _Call(spec, accept_request_id(candidate), context)
        bind_request_id(call.request_id)
        context.set_trailing_metadata(call.trailing)
        if not spec.public:
            self.last_arrival = call.started
            authenticator = self.authenticator
            try:
                call.principal = authenticator.authenticate_now(
                    metadata,  # type: ignore[arg-type]
                    context.auth_context() if authenticator.client_certificates else _NO_TLS,
                )
            except Exception:  # noqa: BLE001 - mapped with the slow path's handling below
                call.principal = None
        bind_principal(call.principal)
        return call

    def _admit(self, call: _Call) -> None:
        """The method's access rule, before the servicer (raises ``PermissionDenied``)."""
        if self.authorise is not None and call.principal is not None and not call.spec.public:
            self.authorise(call.spec.method, call.principal)

    async def _authenticate_slowly(
        self, call: _Call, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Run the token or certificate resolvers (or report why there is no principal)."""
        authenticator = self.authenticator
        try:
            call.principal = await authenticator.authenticate(
                tuple(context.invocation_metadata() or ()),
                context.auth_context() if authenticator.client_certificates else _NO_TLS,
            )
        except BaseException as exc:  # noqa: BLE001 - mapped like any servicer error
            try:
                await self._failed(call, context, exc)
            finally:
                self._finish(call)
        bind_principal(call.principal)

    def _succeeded(self, call: _Call, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        code = context.code()
        if code is not None:
            call.code = code if isinstance(code, grpc.StatusCode) else _OK
        current: object = context.trailing_metadata()
        if current is call.trailing:  # the servicer left the trailing metadata as set
            return
        trailing = tuple(context.trailing_metadata() or ())
        if not any(k == REQUEST_ID_KEY for k, _ in trailing):
            context.set_trailing_metadata((*trailing, (REQUEST_ID_KEY, call.request_id)))

    async def _failed(
        self, call: _Call, context: grpc.aio.ServicerContext[Any, Any], exc: BaseException
    ) -> NoReturn:
        if isinstance(exc, grpc.aio.AbortError):  # the servicer aborted with its own status
            code = context.code()
            call.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise exc
        if not isinstance(exc, Exception):  # cancellation, interpreter exit: let it through
            call.code = grpc.StatusCode.CANCELLED
            raise exc
        mapped = _classified(call, exc, "unexpected error in %s")
        call.code = mapped.code
        status = rpc_status.to_status(to_status_proto(mapped, call.request_id))
        # Record before aborting: abort() sends the status, and a client that has seen it may
        # already be reading /metrics.
        self._finish(call)
        await context.abort(
            status.code,
            status.details,
            (*status.trailing_metadata, (REQUEST_ID_KEY, call.request_id)),
        )
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def _finish(self, call: _Call) -> None:
        """Count the call and write its access line (once; the first code chosen counts)."""
        if call.finished:
            return
        call.finished = True
        elapsed = _perf_counter() - call.started
        spec = call.spec
        code = call.code.name
        self.metrics.observe_rpc(spec.service, spec.name, code, elapsed)
        if not access_enabled():
            return
        principal = call.principal
        access_log(
            event="rpc",
            method=spec.method,
            code=code,
            duration_ms=round(elapsed * 1000, 3),
            request_id=call.request_id,
            actor=principal.actor if principal is not None else None,
        )


def _after_ending(call: _Call, exc: BaseException) -> None:
    """The behaviour of a call a drain ended failed afterwards: the caller has its answer
    (UNAVAILABLE); log what would have been a server fault, and end quietly (an exception
    raised now would reach grpc after the call's status was sent)."""
    if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
        _classified(call, exc, "unexpected error in %s after the drain ended it")


def _classified(call: _Call, exc: Exception, message: str) -> MappedError:
    """``exc`` mapped to its status; a server fault (INTERNAL) is logged with its traceback
    under ``message`` (``%s``: the method), the call's request id attached."""
    mapped = classify(exc, call.request_id)
    if mapped.internal:
        log.error(
            message,
            call.method,
            exc_info=exc,
            extra={"request_id": call.request_id, "method": call.method},
        )
    return mapped


async def _end_call(
    context: grpc.aio.ServicerContext[Any, Any] | InlineContext,
    code: grpc.StatusCode,
    details: str,
    trailing: tuple[tuple[str, str | bytes], ...],
) -> bool:
    """Send ``code`` as the status of a running call from outside its behaviour; whether it
    was sent (not when the call already has its status or its client is gone). The
    synchronous transport's context does it itself; grpc.aio's ``abort`` may be awaited from
    another task: it sends the status and raises (here), and the behaviour's task, when it
    returns, gets the same ``AbortError`` from grpc, which ends it quietly."""
    if isinstance(context, InlineContext):
        return context.end_now(code, details, trailing)
    if context.done():
        return False
    try:
        await context.abort(code, details, trailing)
    except grpc.aio.AbortError:
        return True
    except Exception:  # aborted meanwhile, or the client is gone
        log.debug("could not end a call of the drain", exc_info=True)
    return False


HandlerAdapter: TypeAlias = (
    "Callable[[grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]]"
)
"""What a registrar applies to each wrapped handler (the synchronous transport's
:func:`~govtrust.rpc.sync_transport.inline_handler`); None: the wrapped handler as it is."""


class _WrappingGenericHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose method handlers come back wrapped by the interceptor (and
    adapted, once per method, when the registrar adapts them)."""

    __slots__ = ("_adapt", "_adapted", "_inner", "_interceptor")

    def __init__(
        self,
        inner: grpc.GenericRpcHandler[Any, Any],
        interceptor: GovtrustInterceptor,
        adapt: HandlerAdapter | None,
    ) -> None:
        self._inner = inner
        self._interceptor = interceptor
        self._adapt = adapt
        self._adapted: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        wrapped = self._interceptor.wrapped_handler(handler, method)
        if self._adapt is None:
            return wrapped
        cached = self._adapted.get(method)
        if cached is not None and cached[0] is wrapped:
            return cached[1]
        adapted = self._adapt(wrapped)
        self._adapted[method] = (wrapped, adapted)
        return adapted


class WrappingRegistrar:
    """Stands in for the gRPC server while services are added to it (the generated
    ``add_…_to_server`` functions, health, reflection): every method handler is wrapped by the
    interceptor once, at registration, and the server runs *without* interceptors.

    The same steps as :meth:`GovtrustInterceptor.intercept_service`, minus its per-call cost:
    grpc.aio runs an interceptor as a coroutine chain on every call (the interceptor's
    ``intercept_service`` and the continuation awaiting the handler look-up); with the handlers
    wrapped beforehand the server finds the wrapped handler directly (docs/performance.md,
    "gRPC transport"). ``adapt`` turns each wrapped handler into what ``server`` runs (the
    synchronous server: :func:`govtrust.rpc.sync_transport.inline_handler`).
    """

    def __init__(
        self,
        server: grpc.aio.Server | grpc.Server,
        interceptor: GovtrustInterceptor,
        adapt: HandlerAdapter | None = None,
    ) -> None:
        self.server = server
        self.interceptor = interceptor
        self.adapt = adapt
        # grpc.aio keeps one pending request per pre-registered method and waits on all of them
        # (asyncio.wait) for every call that arrives: with our ~85 methods that is about 35 µs
        # of CPU a call, a tenth of VerifyCertificate's (docs/performance.md, "gRPC
        # transport"). So on grpc.aio the pre-registered methods go into one table that the
        # server asks first, by name, as a generic handler; the synchronous server, which has
        # no such cost, pre-registers them.
        self._table: _MethodTable | None = None
        if isinstance(server, grpc.aio.Server):
            self._table = _MethodTable()
            server.add_generic_rpc_handlers((self._table,))

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        """Register ``generic_rpc_handlers`` with the server, each wrapped."""
        self.server.add_generic_rpc_handlers(
            tuple(
                _WrappingGenericHandler(h, self.interceptor, self.adapt)
                for h in generic_rpc_handlers
            )
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Register the pre-registered methods of ``service_name``, each handler wrapped (on
        grpc.aio: into the method table, see the constructor)."""
        wrap = self.interceptor.wrapped_handler
        adapt = self.adapt or (lambda handler: handler)
        handlers = {
            name: adapt(wrap(h, f"/{service_name}/{name}")) for name, h in method_handlers.items()
        }
        if self._table is not None:
            self._table.add(service_name, handlers)
            return
        self.server.add_registered_method_handlers(  # type: ignore[union-attr]  # 1.62+, unstubbed
            service_name, handlers
        )


class _MethodTable(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Method handlers by full method name (``/package.Service/Method``): the server finds
    any of them with one dictionary look-up."""

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add(self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        """Add the methods of ``service_name`` (short name → handler)."""
        for name, handler in handlers.items():
            self._handlers[f"/{service_name}/{name}"] = handler

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._handlers.get(handler_call_details.method)
