"""`make run` — the README's first command — serves gRPC health and /healthz within 30 s."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_make_run_serves_health(tmp_path: Path) -> None:
    make = require_tool("make")
    grpc_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "GOVTRUST_GRPC_PORT": str(grpc_port),
        "GOVTRUST_HTTP_PORT": str(http_port),
    }
    env.pop("GOVTRUST_DATABASE_URL", None)
    started = time.monotonic()
    process = subprocess.Popen(
        [make, "--no-print-directory", "run", f"DATA_DIR={tmp_path / 'var'}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if f"http listening on http://127.0.0.1:{http_port}" in line:
                break
            assert time.monotonic() - started < 30, "".join(output)
        else:
            raise AssertionError("make run exited early:\n" + "".join(output))
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        response = httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=10)
        assert response.status_code == 200
        assert time.monotonic() - started < 30
        banner = "".join(output)
        assert "curl" in banner  # it prints what to try
        assert (tmp_path / "var" / "govtrust.db").exists()
        assert (tmp_path / "var" / "master.key").stat().st_mode & 0o077 == 0
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
