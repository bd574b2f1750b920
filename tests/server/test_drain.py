"""SIGTERM drains: calls in flight when the signal arrives complete, new ones are refused."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from govtrust.v1 import verify_pb2
from tests.server.serving import call_first_method, health_status, running, server_env

pytestmark = pytest.mark.slow

LAUNCHER = Path(__file__).with_name("slow_server.py")


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_in_flight_calls_finish_during_drain(tmp_path: Path, transport: str) -> None:
    command = [
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
