"""The registrar wraps every handler at registration; on grpc.aio it keeps the generated code's
pre-registered methods in one table asked by name instead of registering them with the server
(grpc.aio waits on one pending request per pre-registered method for every call), and every
method is still served — wrapped — with unknown ones UNIMPLEMENTED as before."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from govtrust.rpc.interceptors import WrappingRegistrar
from govtrust.rpc.status import REQUEST_ID_KEY
from govtrust.rpc.sync_transport import inline_handler
from govtrust.v1 import common_pb2, verify_pb2, verify_pb2_grpc
from tests.server.serving import loopback_interceptor

ANSWER = verify_pb2.VerifyCertificateResponse(
    report=common_pb2.VerificationReport(report_id="registrar-test")
)


class _Verifier(verify_pb2_grpc.VerifyServiceServicer):
    async def VerifyCertificate(
        self, request: verify_pb2.VerifyCertificateRequest, context: Any
    ) -> verify_pb2.VerifyCertificateResponse:
        return ANSWER


def _recording(server: Any) -> list[str]:
    """Record the services ``server`` is asked to pre-register (and still register them)."""
    recorded: list[str] = []
    register = server.add_registered_method_handlers

    def add_registered_method_handlers(service_name: str, handlers: Any) -> None:
        recorded.append(service_name)
        register(service_name, handlers)

    server.add_registered_method_handlers = add_registered_method_handlers
    return recorded


def _unknown(channel: Any) -> Any:
    return channel.unary_unary("/govtrust.v1.VerifyService/NoSuchMethod")


@pytest.mark.asyncio
async def test_grpc_aio_serves_the_methods_from_the_table_not_pre_registered() -> None:
    server = grpc.aio.server()
    recorded = _recording(server)
    registrar = WrappingRegistrar(server, loopback_interceptor())
    verify_pb2_grpc.add_VerifyServiceServicer_to_server(_Verifier(), cast(Any, registrar))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = verify_pb2_grpc.VerifyServiceStub(channel)
            call = stub.VerifyCertificate(verify_pb2.VerifyCertificateRequest(), timeout=10)
            assert await call == ANSWER
            trailing = dict(await call.trailing_metadata() or ())
            assert trailing.get(REQUEST_ID_KEY)  # answered through the interceptor's steps
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await _unknown(channel)(b"", timeout=10)
            assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(None)
    assert recorded == []


def test_the_synchronous_server_pre_registers_the_methods() -> None:
    server = grpc.server(ThreadPoolExecutor(2, thread_name_prefix="registrar-test"))
    recorded = _recording(server)
    registrar = WrappingRegistrar(server, loopback_interceptor(), adapt=inline_handler)
    verify_pb2_grpc.add_VerifyServiceServicer_to_server(_Verifier(), cast(Any, registrar))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = verify_pb2_grpc.VerifyServiceStub(channel)
            answer, call = stub.VerifyCertificate.with_call(
                verify_pb2.VerifyCertificateRequest(), timeout=10
            )
            assert answer == ANSWER
            assert dict(call.trailing_metadata() or ()).get(REQUEST_ID_KEY)
            with pytest.raises(grpc.RpcError) as failed:
                _unknown(channel)(b"", timeout=10)
            assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)
    assert recorded == ["govtrust.v1.VerifyService"]
