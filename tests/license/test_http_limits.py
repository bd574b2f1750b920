"""The public PDF check under hostile load (issue #13): a PDF with hundreds of empty updates is
413 naming the limit; the check runs in the bounded document pool (503 + Retry-After when it is
full, while the other routes keep answering); a client that disconnects stops its check."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from govtrust.api.license_http import make_router
from govtrust.budget import WorkCancelled, checkpoint
from govtrust.http.errors import install_error_handlers
from govtrust.rpc.offload import configure_document_pool, document_pool, shutdown_document_pool
from license import public
from license.runtime import LicenceRuntime
from tests.license.test_http import Licences, app_for, lic, sealed_pdf  # noqa: F401 - fixture
from tests.seal.conftest import world  # noqa: F401 - fixture
from tests.unchanged import unchanged
from tests.untrusted_pdf import append_empty_updates

JSON = {"Accept": "application/json"}


@pytest.fixture
def small_pool() -> Iterator[None]:
    """One document worker and no queue place, for the length of a test."""
    configure_document_pool(workers=1, queue=0, budget_seconds=60)
    yield
    shutdown_document_pool(wait=False)


def _app(licences: Licences, check: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(make_router(lambda: licences.runtime, limiter=None, check_pdf=check))
    return app


def test_a_pdf_with_many_updates_is_413_naming_the_limit(lic: Licences) -> None:  # noqa: F811
    _, pdf = sealed_pdf(lic)
    hostile = append_empty_updates(pdf, 300)  # VALID after seconds of work before the fix
    with TestClient(app_for(lic), base_url="https://gov.example") as client:
        with unchanged(lic.world.db, lic.world.keystore):
            refused = client.post(
                "/verify/license",
                content=hostile,
                headers={"Content-Type": "application/pdf", **JSON},
            )
            assert refused.status_code == 413, refused.text
            error = refused.json()["error"]
            assert error["code"] == "RESOURCE_EXHAUSTED"
            assert "GOVTRUST_PDF_MAX_REVISIONS" in error["message"], error
            page = client.post(
                "/verify/license", files={"pdf": ("x.pdf", hostile, "application/pdf")}
            )
            assert page.status_code == 413 and "文档过于复杂" in page.text
        ok = client.post(
            "/verify/license", content=pdf, headers={"Content-Type": "application/pdf", **JSON}
        )
        assert ok.status_code == 200 and ok.json()["verdict"] == "VALID"
    assert document_pool().admitted == 0


def test_a_full_document_pool_is_503_while_other_routes_answer(
    lic: Licences,  # noqa: F811
    small_pool: None,
) -> None:
    _, pdf = sealed_pdf(lic)
    gate = threading.Event()
    entered = threading.Event()

    def held(runtime: LicenceRuntime, data: bytes) -> public.PublicLicenceView:
        entered.set()
        gate.wait(30)
        return public.view_document(runtime.service, runtime.roots, data)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=_app(lic, held))
        async with httpx.AsyncClient(transport=transport, base_url="https://gov.example") as c:
            headers = {"Content-Type": "application/pdf", **JSON}
            first = asyncio.ensure_future(c.post("/verify/license", content=pdf, headers=headers))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, entered.wait, 30)
            busy = await c.post("/verify/license", content=pdf, headers=headers)
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"]["code"] == "UNAVAILABLE"
            assert int(busy.headers["Retry-After"]) >= 1
            # the QR check, the licence page and the trust list run in the shared pool
            trust = await asyncio.wait_for(c.get("/licence/trust-list"), 10)
            assert trust.status_code == 200
            gate.set()
            done = await first
            assert done.status_code == 200 and done.json()["verdict"] == "VALID"

    asyncio.run(scenario())
    assert document_pool().admitted == 0


def test_a_disconnected_client_stops_its_check(lic: Licences, small_pool: None) -> None:  # noqa: F811
    started = threading.Event()
    halted = threading.Event()
    stopped: list[BaseException] = []

    def endless(runtime: LicenceRuntime, data: bytes) -> public.PublicLicenceView:
        started.set()
        try:
            while True:  # a check that would never end on its own
                checkpoint()
        except BaseException as exc:
            stopped.append(exc)
            raise
        finally:
            halted.set()

    app = _app(lic, endless)
    body = b"%PDF-1.7\n% an upload\n"

    async def scenario() -> list[dict[str, Any]]:
        gone = asyncio.Event()
        delivered = False
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "path": "/verify/license",
            "raw_path": b"/verify/license",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"gov.example"), (b"content-type", b"application/pdf")],
            "client": ("192.0.2.7", 50000),
            "server": ("gov.example", 443),
        }
        call = asyncio.ensure_future(app(scope, receive, send))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, started.wait, 30)
        gone.set()  # the client closes the connection
        await asyncio.wait_for(call, 10)
        return sent

    with unchanged(lic.world.db, lic.world.keystore):
        sent = asyncio.run(scenario())
    assert halted.wait(10), "the check went on after the client left"
    assert len(stopped) == 1 and isinstance(stopped[0], WorkCancelled)
    assert sent[0]["status"] == 499


def test_a_check_over_its_time_budget_is_413(lic: Licences) -> None:  # noqa: F811
    configure_document_pool(workers=1, queue=0, budget_seconds=0.5)

    def endless(runtime: LicenceRuntime, data: bytes) -> public.PublicLicenceView:
        while True:  # a check that would never end on its own
            checkpoint()

    try:
        with (
            unchanged(lic.world.db, lic.world.keystore),
            TestClient(_app(lic, endless), base_url="https://gov.example") as client,
        ):
            answer = client.post(
                "/verify/license",
                content=b"%PDF-1.7\n",
                headers={"Content-Type": "application/pdf", **JSON},
            )
        assert answer.status_code == 413, answer.text
        error = answer.json()["error"]
        assert error["code"] == "RESOURCE_EXHAUSTED"
        assert "GOVTRUST_DOCUMENT_BUDGET_SECONDS" in error["message"]
        assert document_pool().admitted == 0
    finally:
        shutdown_document_pool(wait=False)
