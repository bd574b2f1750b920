"""End to end (issue #13): hostile documents against ``govtrust serve`` never starve the rest.

Six concurrent unauthenticated uploads of a sealed licence PDF with 2,000 empty incremental
updates (78 s each, and /readyz 503 for minutes, before the fix) are answered 413 naming the
revision limit within seconds; then six concurrent VerifyPdf calls of a PDF with 400 updates
(under a raised limit: real work, a second or more each) fill the bounded document pool. All
the while /readyz, gRPC health and another gRPC call answer within one second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from govtrust.v1 import verify_pb2, verify_pb2_grpc
from tests.license.test_document import Licence, licence  # noqa: F401 - fixture
from tests.seal.conftest import live_ca, world  # noqa: F401 - fixtures
from tests.server.serving import (
    channel,
    running,
    serve_command,
    server_database,
    server_env,
    settle,
)
from tests.unchanged import unchanged
from tests.untrusted_pdf import append_empty_updates

# serial: a load test, its one-second probes must not compete with another test for the cores
pytestmark = [pytest.mark.slow, pytest.mark.serial]
PROBE_LIMIT = 1.0  # seconds a health or gRPC answer may take while documents are checked
BUDGET = 30  # seconds a document check may take from admission


def _probe_while(
    busy: list[Future[object]], http: httpx.Client, grpc_address: str
) -> list[tuple[str, float]]:
    """Probe /readyz, gRPC health and VerifyCertificate until every ``busy`` future is done;
    the slowest answer of each kind."""
    slowest = {"readyz": 0.0, "grpc-health": 0.0, "grpc-call": 0.0}
    with channel(grpc_address, fresh_connection=True) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        verify = verify_pb2_grpc.VerifyServiceStub(ch)

        def timed(name: str, call: Callable[[], None]) -> None:
            start = time.monotonic()
            call()
            slowest[name] = max(slowest[name], time.monotonic() - start)

        def ready() -> None:
            assert http.get("/readyz", timeout=5).status_code == 200

        def serving() -> None:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        def refused() -> None:
            with pytest.raises(grpc.RpcError) as info:
                verify.VerifyCertificate(verify_pb2.VerifyCertificateRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        rounds = 0
        while rounds < 3 or not all(f.done() for f in busy):
            timed("readyz", ready)
            timed("grpc-health", serving)
            timed("grpc-call", refused)
            rounds += 1
    return sorted(slowest.items())


def test_hostile_documents_never_starve_health_or_grpc(
    licence: Licence,  # noqa: F811
    tmp_path: Path,
) -> None:
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    hostile = append_empty_updates(pdf, 2000)
    heavy = append_empty_updates(pdf, 400)
    command = serve_command(
        "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0"
    )
    env = server_env(
        GOVTRUST_PDF_MAX_REVISIONS="1000",
        # generous: the budget runs from admission, and a loaded CI host once spent 10 s on
        # two of these; the point here is the probes (the budget: test_document_limits.py)
        GOVTRUST_DOCUMENT_BUDGET_SECONDS=str(BUDGET),
        GOVTRUST_VERIFY_DOCUMENT_WORKERS="2",  # six calls of a second or more: four wait
    )
    settle(tmp_path / "data")  # the server's first periodic round changes nothing
    with (
        running(command, env) as served,
        httpx.Client(base_url=served.http_base) as http,
        ThreadPoolExecutor(max_workers=6) as clients,
    ):
        # six concurrent public uploads of the document
        def upload() -> tuple[int, str, float]:
            start = time.monotonic()
            with httpx.Client(base_url=served.http_base, timeout=60) as own:
                answer = own.post(
                    "/verify/license",
                    content=hostile,
                    headers={"Content-Type": "application/pdf", "Accept": "application/json"},
                )
            return answer.status_code, answer.text, time.monotonic() - start

        # the refused uploads (and the probes' refused calls) store nothing
        with server_database(tmp_path / "data") as db, unchanged(db):
            uploads = [clients.submit(upload) for _ in range(6)]
            slowest = _probe_while(uploads, http, served.grpc_address)  # type: ignore[arg-type]
            results = [future.result() for future in uploads]
        for status, text, took in results:
            assert status == 413 and "GOVTRUST_PDF_MAX_REVISIONS" in text, text
            assert took < 10, took
        assert all(took < PROBE_LIMIT for _, took in slowest), slowest

        # six concurrent VerifyPdf calls that each take seconds: they wait in the bounded pool
        codes: list[str] = []
        lock = threading.Lock()

        def verify_pdf() -> float:
            start = time.monotonic()
            with channel(served.grpc_address, fresh_connection=True) as ch:
                stub = verify_pb2_grpc.VerifyServiceStub(ch)
                try:
                    reply = stub.VerifyPdf(verify_pb2.VerifyPdfRequest(pdf=heavy), timeout=60)
                    code = "OK" if reply.report.document.revision_count == 402 else "?"
                except grpc.RpcError as exc:  # over the budget: RESOURCE_EXHAUSTED
                    code = exc.code().name
            with lock:
                codes.append(code)
            return time.monotonic() - start

        calls = [clients.submit(verify_pdf) for _ in range(6)]
        slowest = _probe_while(calls, http, served.grpc_address)  # type: ignore[arg-type]
        durations = [c.result() for c in calls]
        assert all(took < PROBE_LIMIT for _, took in slowest), slowest
        assert max(durations) < BUDGET + 5, durations  # the budget bounds every answer
        assert "OK" in codes and set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
