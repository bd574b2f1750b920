"""SIGTERM drains: health goes NOT_SERVING while calls still arriving are served, until callers
(the load balancer) have stopped sending; then calls in flight complete, new ones are refused; a
gRPC call still running when the grace period is over is answered UNAVAILABLE ("the server is
shutting down; retry"), not cancelled, and its work runs on to its end before the process
exits."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest

from govtrust.v1 import verify_pb2, verify_pb2_grpc
from tests.server.serving import call_first_method, channel, health_status, running, server_env

pytestmark = pytest.mark.slow

LAUNCHER = Path(__file__).with_name("slow_server.py")


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_in_flight_calls_finish_during_drain(tmp_path: Path, transport: str) -> None:
    command = _command(tmp_path)
    results: dict[str, Any] = {}
    with running(command, server_env(GOVTRUST_GRPC_TRANSPORT=transport)) as served:

        def grpc_call() -> None:
            try:
                results["grpc"] = call_first_method(
                    served.grpc_address, verify_pb2, "VerifyService"
                )
            except grpc.RpcError as exc:
                results["grpc"] = exc
            results["grpc_done"] = time.monotonic()

        def http_call() -> None:
            results["http"] = httpx.get(f"{served.http_base}/test/slow", timeout=30)
            results["http_done"] = time.monotonic()

        threads = [threading.Thread(target=grpc_call), threading.Thread(target=http_call)]
        for thread in threads:
            thread.start()
        served.wait_stderr("slow grpc call started")
        served.wait_stderr("slow http call started")

        served.process.send_signal(15)  # SIGTERM, while both calls are in flight
        signalled = time.monotonic()
        served.wait_stderr("draining: no new calls accepted")
        try:
            status = health_status(served.grpc_address, fresh_connection=True)
        except grpc.RpcError as exc:
            status = exc.code().name  # refused: no longer accepting
        assert status != "SERVING"

        for thread in threads:
            thread.join(30)
        code = served.process.wait(15)
        exited = time.monotonic()

    assert isinstance(results["grpc"], verify_pb2.VerifyCertificateResponse), results["grpc"]
    assert results["http"].status_code == 200
    assert results["http"].json() == {"done": True}
    assert code == 0, served.transcript()
    # The calls completed after the signal, and the process did not wait out the whole grace.
    assert results["grpc_done"] > signalled and results["http_done"] > signalled
    assert exited - signalled < 8


def _command(tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        str(LAUNCHER),
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--grpc-port",
        "0",
        "--http-port",
        "0",
    ]


GRACE = 1.0
OUTLIVING = 4.0  # the slow calls' work: longer than the grace


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_a_call_outliving_the_grace_ends_unavailable(tmp_path: Path, transport: str) -> None:
    env = server_env(
        GOVTRUST_GRPC_TRANSPORT=transport,
        SLOW_SERVER_SECONDS=str(OUTLIVING),
        SLOW_SERVER_GRACE=str(GRACE),
    )
    results: dict[str, Any] = {}
    with running(_command(tmp_path), env) as served:

        def grpc_call() -> None:
            try:
                results["grpc"] = call_first_method(
                    served.grpc_address,
                    verify_pb2,
                    "VerifyService",
                    metadata=(("x-request-id", "req-outlives"),),
                )
            except grpc.RpcError as exc:
                results["grpc"] = exc
            results["grpc_done"] = time.monotonic()

        def http_call() -> None:
            try:
                results["http"] = httpx.get(f"{served.http_base}/test/slow", timeout=30)
            except httpx.HTTPError as exc:
                results["http"] = exc

        threads = [threading.Thread(target=grpc_call), threading.Thread(target=http_call)]
        for thread in threads:
            thread.start()
        served.wait_stderr("slow grpc call started")
        served.wait_stderr("slow http call started")
        served.process.send_signal(15)
        signalled = time.monotonic()
        for thread in threads:
            thread.join(30)
        code = served.process.wait(30)
        exited = time.monotonic()
        transcript = served.transcript()

    error = results["grpc"]
    assert isinstance(error, grpc.RpcError), error
    call = cast(grpc.Call, error)
    # before: grpc's cancellation at the end of the grace ("Cancelling all calls"), a reset
    # of the stream that a proxy may pass on as CANCELLED or UNKNOWN (not retried)
    assert call.code() is grpc.StatusCode.UNAVAILABLE, call.details()
    assert call.details() == "the server is shutting down; retry"
    assert dict(call.trailing_metadata() or ())["x-request-id"] == "req-outlives"
    # answered at the end of the grace, not when the work ended (nor grpc's backstop later)
    assert GRACE - 0.2 < results["grpc_done"] - signalled < OUTLIVING - 1
    assert "answered UNAVAILABLE" in transcript
    # the work ran on to its end, and the process waited for it, then exited cleanly
    assert "slow grpc call finished" in transcript
    assert code == 0, transcript
    assert exited - signalled < OUTLIVING + 4
    # HTTP: uvicorn cancels a request still running at its graceful-shutdown timeout, and
    # answered 500 (not retryable) before; now 503 with the same message
    response = results["http"]
    assert isinstance(response, httpx.Response), response
    assert response.status_code == 503, response.text
    assert response.json()["error"]["message"] == "the server is shutting down; retry"
    assert response.json()["error"]["reason"] == "SHUTTING_DOWN"
    assert "Exception in ASGI application" not in transcript


QUIET = 3.0


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_calls_arriving_after_the_signal_are_served_until_callers_stop(
    tmp_path: Path, transport: str
) -> None:
    """Between SIGTERM and the servers' stop the process is a lame duck: NOT_SERVING, so that
    the load balancer takes it out, but a call that still arrives — on a new connection too —
    is served (before: refused; and grpc cancelled, CANCELLED, a call that had reached the
    server but not yet a handler when server.stop began). Once no call has come for the quiet
    period, the drain goes on, long before the lame duck's longest."""
    env = server_env(
        GOVTRUST_GRPC_TRANSPORT=transport,
        SLOW_SERVER_SECONDS="0.01",
        SLOW_SERVER_QUIET=str(QUIET),
        SLOW_SERVER_LAME_DUCK="60",
    )
    with running(_command(tmp_path), env) as served:
        served.process.send_signal(15)
        signalled = time.monotonic()
        served.wait_stderr("serving on until no call")
        assert health_status(served.grpc_address, fresh_connection=True) == "NOT_SERVING"
        with channel(served.grpc_address, fresh_connection=True) as fresh:
            answer = verify_pb2_grpc.VerifyServiceStub(fresh).VerifyCertificate(
                verify_pb2.VerifyCertificateRequest(), timeout=10
            )
        answered = time.monotonic()
        assert isinstance(answer, verify_pb2.VerifyCertificateResponse)
        assert httpx.get(f"{served.http_base}/readyz", timeout=10).status_code == 503
        code = served.process.wait(30)
        exited = time.monotonic()
        transcript = served.transcript()

    assert code == 0, transcript
    assert "no new calls accepted" in transcript
    # the quiet period ran from the last call (health checks do not count), not from the signal
    assert exited - answered >= QUIET - 0.5
    assert exited - signalled < 30
