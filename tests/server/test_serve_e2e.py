"""End to end: ``python -m govtrust serve`` on free ports, on SQLite and on PostgreSQL.

Checks gRPC health, reflection, a refused RPC with its rich status, /healthz, /readyz,
that /metrics counts exactly the calls made, then that SIGTERM drains and exits 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import grpc
import httpx
import pytest
from grpc_status import rpc_status

from govtrust.server.services import SERVICE_NAMES
from govtrust.v1 import verify_pb2
from tests.server.serving import (
    call_first_method,
    health_status,
    metric_samples,
    metric_value,
    reflected_services,
    running,
    serve_command,
    server_database,
    server_env,
    settle,
)
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("transport", ["aio", "sync"])
def test_serve_answers_and_drains(tmp_path: Path, database_url: str, transport: str) -> None:
    command = serve_command(
        "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0"
    )
    settle(tmp_path / "data", database_url)  # the server's first periodic round changes nothing
    env = server_env(GOVTRUST_DATABASE_URL=database_url, GOVTRUST_GRPC_TRANSPORT=transport)
    with running(command, env) as served:
        banner = "\n".join(served.stdout.lines)
        assert "loopback without TLS: every local caller is admin" in banner
        assert ("PostgreSQL" if "postgresql" in database_url else "SQLite") in banner
        assert "key store  soft" in banner

        # gRPC: health for the server and every service, reflection, one RPC.
        for service in ("", *SERVICE_NAMES):
            assert health_status(served.grpc_address, service) == "SERVING"
        assert reflected_services(served.grpc_address) >= {
            *SERVICE_NAMES,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        with (
            server_database(tmp_path / "data", database_url) as db,
            unchanged(db),
            pytest.raises(grpc.RpcError) as info,
        ):
            call_first_method(
                served.grpc_address,
                verify_pb2,
                "VerifyService",
                metadata=(("x-request-id", "e2e-1"),),
            )
        call = cast(grpc.Call, info.value)
        # VerifyCertificate with nothing to verify: a rich INVALID_ARGUMENT naming the field.
        assert call.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rpc_status.from_call(call) is not None
        assert ("x-request-id", "e2e-1") in tuple(call.trailing_metadata() or ())

        # HTTP.
        with httpx.Client(base_url=served.http_base, timeout=10) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "keystore": "ok"}
            text = http.get("/metrics").text

        handled = "govtrust_grpc_server_handled_total"
        assert (
            metric_value(text, handled, grpc_service="grpc.health.v1.Health", grpc_method="Check")
            == len(SERVICE_NAMES) + 1
        )
        assert (
            metric_value(
                text,
                handled,
                grpc_service="govtrust.v1.VerifyService",
                grpc_code="INVALID_ARGUMENT",
            )
            == 1
        )
        assert metric_samples(text, "govtrust_grpc_server_handling_seconds_bucket")
        assert metric_value(text, "govtrust_http_requests_total", route="/healthz") == 1
        assert metric_value(text, "govtrust_http_requests_total", route="/readyz") == 1

        # One access line per call, with the principal, never a body (written before the reply,
        # read from the pipe by another thread: awaited, not assumed).
        served.wait_stderr('"code": "INVALID_ARGUMENT"', 1)
        rpc_lines = [e for e in served.log_entries() if e.get("event") == "rpc"]
        refused = [e for e in rpc_lines if e["code"] == "INVALID_ARGUMENT"]
        assert refused[0]["request_id"] == "e2e-1"
        assert refused[0]["actor"] == "local:loopback"
        assert isinstance(refused[0]["duration_ms"], float)

        code, elapsed = served.stop()
        assert code == 0, served.transcript()
        assert elapsed < 10
        assert "Traceback" not in served.transcript()
