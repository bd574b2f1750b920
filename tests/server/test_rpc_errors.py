"""The one error mapping, exercised through a real grpc.aio server and the govtrust interceptor.

Each test servicer method raises a domain error; the client decodes the ``google.rpc.Status``
with ``grpc_status.rpc_status.from_call`` and checks code, message and details.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from govtrust.observability.metrics import get_metrics
from govtrust.rpc.auth import Authenticator
from govtrust.rpc.context import current_principal
from govtrust.rpc.interceptors import GovtrustInterceptor
from govtrust.rpc.status import classify
from hsm.errors import KeyNotFound


class SealRevoked(FailedPrecondition):
    reason = "SEAL_REVOKED"


ERRORS: dict[str, Exception] = {
    "invalid": InvalidArgument(
        "the request is invalid",
        [FieldViolation("name", "must not be empty"), FieldViolation("age", "must be positive")],
    ),
    "precondition": FailedPrecondition(
        "seal 7 is revoked", [PreconditionViolation("STATE", "seal/7", "seal is revoked")]
    ),
    "reasoned": SealRevoked("seal 8 is revoked"),
    "not_found": NotFound("no seal 9"),
    "key_not_found": KeyNotFound("k-1"),
    "exists": AlreadyExists("seal 9 exists"),
    "denied": PermissionDenied("local:x lacks the role seal-maker"),
    "unauthenticated": Unauthenticated("no credentials"),
    "exhausted": ResourceExhausted("PDF larger than 64 MiB"),
    "unavailable": Unavailable("HSM unreachable"),
    "unimplemented": NotImplementedError("x"),
    "boom": RuntimeError("secret detail 4711"),
}

EXPECTED = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "reasoned": grpc.StatusCode.FAILED_PRECONDITION,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "key_not_found": grpc.StatusCode.NOT_FOUND,
    "exists": grpc.StatusCode.ALREADY_EXISTS,
    "denied": grpc.StatusCode.PERMISSION_DENIED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "boom": grpc.StatusCode.INTERNAL,
}


async def _raise(request: bytes, _context: Any) -> bytes:
    raise ERRORS[request.decode()]


def _raise_sync(request: bytes, _context: Any) -> bytes:
    raise ERRORS[request.decode()]


async def _stream_then_raise(request: bytes, _context: Any) -> AsyncIterator[bytes]:
    yield b"first"
    raise ERRORS[request.decode()]


async def _whoami(_request: bytes, _context: Any) -> bytes:
    return current_principal().actor.encode()


def _whoami_sync(_request: bytes, _context: Any) -> bytes:
    thread = threading.current_thread().name
    return f"{current_principal().actor} {thread}".encode()


def _handlers() -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        "test.Errors",
        {
            "Raise": grpc.unary_unary_rpc_method_handler(_raise),
            "RaiseSync": grpc.unary_unary_rpc_method_handler(_raise_sync),
            "Stream": grpc.unary_stream_rpc_method_handler(_stream_then_raise),
            "WhoAmI": grpc.unary_unary_rpc_method_handler(_whoami),
            "WhoAmISync": grpc.unary_unary_rpc_method_handler(_whoami_sync),
        },
    )


class _Server:
    """A grpc.aio server with the govtrust interceptor, run on its own loop in a thread."""

    def __init__(self, *, trust_loopback: bool) -> None:
        self.trust_loopback = trust_loopback
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> _Server:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> int:
        authenticator = Authenticator(cast(Any, None), trust_insecure_loopback=self.trust_loopback)
        self.server = grpc.aio.server(
            interceptors=[GovtrustInterceptor(authenticator, get_metrics())]
        )
        self.server.add_generic_rpc_handlers((_handlers(),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def call(
        self, method: str, request: bytes, metadata: tuple[tuple[str, str], ...] = ()
    ) -> tuple[bytes, grpc.Call]:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = channel.unary_unary(f"/test.Errors/{method}", None, None)
            response, call = stub.with_call(request, metadata=metadata, timeout=10)
            return cast(bytes, response), call

    def fail(
        self, method: str, request: bytes, metadata: tuple[tuple[str, str], ...] = ()
    ) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            self.call(method, request, metadata)
        return info.value


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    with _Server(trust_loopback=True) as running:
        yield running


def _details(error: grpc.RpcError) -> dict[str, Any]:
    status = rpc_status.from_call(cast(grpc.Call, error))
    assert status is not None, "no google.rpc.Status in the trailers"
    found: dict[str, Any] = {}
    for detail in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.ErrorInfo,
            error_details_pb2.RequestInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.__name__] = message
    return found


@pytest.mark.parametrize("name", list(ERRORS))
@pytest.mark.parametrize("method", ["Raise", "RaiseSync"])
def test_each_error_maps_to_its_code_with_details(server: _Server, name: str, method: str) -> None:
    error = server.fail(method, name.encode(), (("x-request-id", f"req-{name}"),))
    call = cast(grpc.Call, error)
    assert call.code() == EXPECTED[name]
    details = _details(error)
    assert details["ErrorInfo"].domain == "govtrust"
    assert details["RequestInfo"].request_id == f"req-{name}"
    assert ("x-request-id", f"req-{name}") in tuple(call.trailing_metadata() or ())
    if name == "invalid":
        violations = details["BadRequest"].field_violations
        assert [(v.field, v.description) for v in violations] == [
            ("name", "must not be empty"),
            ("age", "must be positive"),
        ]
        assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"
    if name == "precondition":
        (violation,) = details["PreconditionFailure"].violations
        assert (violation.type, violation.subject) == ("STATE", "seal/7")
        assert call.details() == "seal 7 is revoked"
    if name == "reasoned":
        assert details["ErrorInfo"].reason == "SEAL_REVOKED"
    if name == "key_not_found":
        assert "k-1" in (call.details() or "")


def test_unexpected_error_is_internal_generic_and_logged(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="govtrust.rpc"):
        error = server.fail("Raise", b"boom", (("x-request-id", "req-boom"),))
    call = cast(grpc.Call, error)
    assert call.code() == grpc.StatusCode.INTERNAL
    assert "secret detail" not in (call.details() or "")
    assert "req-boom" in (call.details() or "")
    assert _details(error)["ErrorInfo"].reason == "INTERNAL"
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "secret detail 4711" in str(logged[0].exc_info[1])  # type: ignore[index]


def test_error_in_a_stream_is_mapped(server: _Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = channel.unary_stream("/test.Errors/Stream", None, None)(b"not_found", timeout=10)
        received = []
        with pytest.raises(grpc.RpcError) as info:
            for item in stream:
                received.append(item)
    assert received == [b"first"]
    assert cast(grpc.Call, info.value).code() == grpc.StatusCode.NOT_FOUND
    assert _details(info.value)["ErrorInfo"].reason == "NOT_FOUND"


def test_request_id_is_generated_when_missing_or_unsafe(server: _Server) -> None:
    _, call = server.call("WhoAmI", b"")
    generated = dict(call.trailing_metadata() or ())["x-request-id"]
    assert len(generated) == 32
    for unsafe in ('forged" level="error', "x" * 200):
        _, call = server.call("WhoAmI", b"", (("x-request-id", unsafe),))
        replaced = dict(call.trailing_metadata() or ())["x-request-id"]
        assert len(replaced) == 32 and replaced not in (unsafe, generated)


def test_loopback_caller_is_local_admin_also_in_sync_code(server: _Server) -> None:
    response, _ = server.call("WhoAmI", b"")
    assert response == b"local:loopback"
    response, _ = server.call("WhoAmISync", b"")
    actor, thread = response.decode().split(" ")
    assert actor == "local:loopback"
    assert thread.startswith("govtrust-sync")  # ran in the run_sync pool, not on the loop


def test_bearer_tokens_are_refused_until_enabled(server: _Server) -> None:
    error = server.fail("WhoAmI", b"", (("authorization", "Bearer abc"),))
    assert cast(grpc.Call, error).code() == grpc.StatusCode.UNAUTHENTICATED
    assert cast(grpc.Call, error).details() == "bearer tokens are not enabled yet"
    error = server.fail("WhoAmI", b"", (("authorization", "Basic abc"),))
    assert cast(grpc.Call, error).code() == grpc.StatusCode.UNAUTHENTICATED


def test_token_resolver_supplies_the_principal(server: _Server) -> None:
    from govtrust.principal import Principal
    from govtrust.rpc import auth

    def resolver(_platform: Any, token: str) -> Principal:
        if token != "good":
            raise Unauthenticated("token rejected")
        return Principal(kind="user", subject="u-1")

    auth.set_token_resolver(resolver)
    try:
        response, _ = server.call("WhoAmI", b"", (("authorization", "Bearer good"),))
        assert response == b"user:u-1"
        error = server.fail("WhoAmI", b"", (("authorization", "Bearer bad"),))
        assert cast(grpc.Call, error).details() == "token rejected"
    finally:
        auth.set_token_resolver(None)


def test_without_trusted_loopback_no_credentials_is_unauthenticated() -> None:
    with _Server(trust_loopback=False) as strict:
        error = strict.fail("WhoAmI", b"")
    assert cast(grpc.Call, error).code() == grpc.StatusCode.UNAUTHENTICATED
    assert _details(error)["ErrorInfo"].reason == "UNAUTHENTICATED"


def test_classify_maps_every_domain_error_to_an_http_status() -> None:
    statuses = {name: classify(exc).http_status for name, exc in ERRORS.items()}
    assert statuses == {
        "invalid": 400,
        "precondition": 412,
        "reasoned": 412,
        "not_found": 404,
        "key_not_found": 404,
        "exists": 409,
        "denied": 403,
        "unauthenticated": 401,
        "exhausted": 429,
        "unavailable": 503,
        "unimplemented": 501,
        "boom": 500,
    }


def test_metrics_count_calls_by_method_and_code(server: _Server) -> None:
    metrics = get_metrics()

    def count() -> float:
        sample: Callable[[], float] = metrics.grpc_handled.labels(
            "test.Errors", "Raise", "NOT_FOUND"
        )._value.get
        return sample()

    before = count()
    server.fail("Raise", b"not_found")
    server.fail("Raise", b"not_found")
    assert count() == before + 2
