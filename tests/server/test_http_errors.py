"""The HTTP side of the error mapping, the router registry and the observability middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

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
from govtrust.http.app import GovtrustApp, create_app
from govtrust.observability.metrics import get_metrics

ERRORS: dict[str, tuple[Exception, int, str]] = {
    "invalid": (
        InvalidArgument("bad", [FieldViolation("name", "must not be empty")]),
        400,
        "INVALID_ARGUMENT",
    ),
    "precondition": (
        FailedPrecondition("revoked", [PreconditionViolation("STATE", "seal/1", "revoked")]),
        412,
        "FAILED_PRECONDITION",
    ),
    "not_found": (NotFound("no seal"), 404, "NOT_FOUND"),
    "exists": (AlreadyExists("exists"), 409, "ALREADY_EXISTS"),
    "denied": (PermissionDenied("no"), 403, "PERMISSION_DENIED"),
    "unauthenticated": (Unauthenticated("who?"), 401, "UNAUTHENTICATED"),
    "exhausted": (ResourceExhausted("slow down"), 429, "RESOURCE_EXHAUSTED"),
    "unavailable": (Unavailable("later"), 503, "UNAVAILABLE"),
    "boom": (RuntimeError("secret detail 4711"), 500, "INTERNAL"),
}


def _router(_platform: Any) -> APIRouter:
    router = APIRouter()

    @router.get("/test/raise/{name}")
    async def raise_error(name: str) -> dict[str, str]:
        raise ERRORS[name][0]

    @router.get("/test/sync/{name}")
    def raise_error_sync(name: str) -> dict[str, str]:
        raise ERRORS[name][0]

    async def fast(request: Request) -> Response:
        name = request.query_params.get("raise", "")
        if name:
            raise ERRORS[name][0]
        return PlainTextResponse(f"fast {request.url.path} {request.method}")

    router.routes.append(Route("/test/fast", fast, methods=["GET", "POST"]))
    router.routes.append(Route("/test/fast/{tail}", fast, methods=["GET"]))

    @router.get("/test/typed")
    async def typed(count: int) -> dict[str, int]:
        return {"count": count}

    return router


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cast(Any, object()), get_metrics(), routers={"test-errors": _router})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(ERRORS))
@pytest.mark.parametrize("kind", ["raise", "sync"])
async def test_errors_map_to_status_and_json(
    client: httpx.AsyncClient, name: str, kind: str
) -> None:
    _, status, code = ERRORS[name]
    response = await client.get(f"/test/{kind}/{name}", headers={"x-request-id": f"r-{name}"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == f"r-{name}"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == f"r-{name}"
    if name == "invalid":
        assert error["violations"] == [{"field": "name", "description": "must not be empty"}]
    if name == "precondition":
        assert error["violations"] == [
            {"type": "STATE", "subject": "seal/1", "description": "revoked"}
        ]
    if name == "boom":
        assert "secret" not in response.text
        assert "r-boom" in error["message"]


@pytest.mark.asyncio
async def test_crash_is_logged_once_with_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/test/raise/boom")
    assert response.status_code == 500
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert len(with_traceback) == 1


@pytest.mark.asyncio
async def test_validation_and_unknown_routes_use_the_same_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/test/typed", params={"count": "many"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["violations"][0]["field"] == "count"
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.asyncio
async def test_http_requests_are_counted_by_route_template(client: httpx.AsyncClient) -> None:
    counter = get_metrics().http_requests.labels("GET", "/test/raise/{name}", "404")
    before = counter._value.get()
    await client.get("/test/raise/not_found")
    await client.get("/test/raise/not_found")
    assert counter._value.get() == before + 2
    response = await client.get("/healthz")
    assert response.json() == {"status": "ok"}


@pytest.mark.asyncio
async def test_fast_lane_serves_exact_plain_routes_with_ids_metrics_and_error_mapping(
    client: httpx.AsyncClient,
) -> None:
    app = cast(GovtrustApp, cast(httpx.ASGITransport, client._transport).app)
    assert ("POST", "/test/fast") in app.fast_routes
    assert ("GET", "/test/typed") not in app.fast_routes  # a FastAPI route: normal path
    assert not any("{" in path for _, path in app.fast_routes)  # path parameters: normal path

    metric = get_metrics().http_requests
    before = metric.labels("POST", "/test/fast", "200")._value.get()
    response = await client.post("/test/fast", headers={"x-request-id": "fast-lane-1"})
    assert response.status_code == 200
    assert response.text == "fast /test/fast POST"
    assert response.headers["x-request-id"] == "fast-lane-1"
    assert metric.labels("POST", "/test/fast", "200")._value.get() == before + 1

    response = await client.get("/test/fast", params={"raise": "denied"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    response = await client.get("/test/fast", params={"raise": "boom"})
    assert response.status_code == 500
    assert "4711" not in response.text

    response = await client.get("/test/fast/x")  # not in the lane, same endpoint
    assert response.text == "fast /test/fast/x GET"
    response = await client.put("/test/fast")
    assert response.status_code == 405
