"""``--workers 2``: both processes share both ports and answer; metrics cover both; SIGTERM → 0."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.server.serving import (
    health_status,
    metric_samples,
    metric_value,
    running,
    serve_command,
    server_database,
    server_env,
    settle,
)
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow

CALLS = 24  # each on a new connection: P(all on one worker) = 2 * 2**-24


def test_two_workers_share_the_ports(tmp_path: Path, database_url: str) -> None:
    command = serve_command(
        "--data-dir",
        str(tmp_path / "data"),
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--workers",
        "2",
    )
    settle(tmp_path / "data", database_url)  # the server's first periodic round changes nothing
    with running(command, server_env(GOVTRUST_DATABASE_URL=database_url)) as served:
        assert "2 workers" in served.stdout.lines[0]
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with (
            server_database(tmp_path / "data", database_url) as db,
            unchanged(db),  # health probes store nothing, whichever worker answers
            httpx.Client(base_url=served.http_base, timeout=10, limits=no_keepalive) as http,
        ):
            for _ in range(CALLS):
                assert health_status(served.grpc_address, fresh_connection=True) == "SERVING"
                assert http.get("/healthz").status_code == 200

        # Which process answered is in each access line (pid), written before the reply.
        served.wait_stderr('"/grpc.health.v1.Health/Check"', CALLS)
        served.wait_stderr('"route": "/healthz"', CALLS)
        entries = served.log_entries()
        supervisor = served.process.pid
        grpc_pids = {e["pid"] for e in entries if e.get("method") == "/grpc.health.v1.Health/Check"}
        http_pids = {e["pid"] for e in entries if e.get("route") == "/healthz"}
        assert len(grpc_pids) == 2 and supervisor not in grpc_pids
        assert http_pids == grpc_pids

        # Any worker's /metrics reports the calls of both, and both workers are live.
        with httpx.Client(base_url=served.http_base, timeout=10) as http:
            text = http.get("/metrics").text
        assert (
            metric_value(
                text, "govtrust_grpc_server_handled_total", grpc_method="Check", grpc_code="OK"
            )
            == CALLS
        )
        assert metric_value(text, "govtrust_http_requests_total", route="/healthz") == CALLS
        live = {labels["pid"] for labels, _ in metric_samples(text, "govtrust_worker_up")}
        assert live == {str(pid) for pid in grpc_pids}

        code, elapsed = served.stop()
        assert code == 0, served.transcript()
        assert elapsed < 10
        for pid in grpc_pids:  # the workers are gone (reaped by the supervisor)
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_supervisor_restarts_a_crashed_worker(tmp_path: Path) -> None:
    command = serve_command(
        "--data-dir",
        str(tmp_path / "data"),
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--workers",
        "2",
    )
    with running(command, server_env()) as served:
        started = [e for e in served.log_entries() if e.get("msg") == "worker 0 started"]
        victim = started[0]["worker_pid"]
        os.kill(victim, signal.SIGKILL)  # a worker this test's server started

        served.wait_stderr('"msg": "worker 0 ready"', 2)
        restarted = [e for e in served.log_entries() if e.get("msg") == "worker 0 started"]
        assert len(restarted) == 2 and restarted[1]["worker_pid"] != victim
        assert any("exited unexpectedly" in e["msg"] for e in served.log_entries())
        for _ in range(6):
            assert health_status(served.grpc_address, fresh_connection=True) == "SERVING"

        code, _ = served.stop()
        assert code == 0, served.transcript()
