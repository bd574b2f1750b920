"""The request body limit (govtrust.http.limits) in-process: the default, a route's own limit,
the fast lane, a raw ASGI endpoint, a lying Content-Length, and that a refused body is not
read past the limit (the client's generator stops being pulled)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from govtrust.config import ConfigError, load_settings
from govtrust.http.app import GovtrustApp, create_app
from govtrust.http.limits import body_limit
from govtrust.observability.metrics import get_metrics

DEFAULT = 4096
ROUTE = 16 * 1024
CHUNK = 1024


class _Seen:
    """The sizes of the bodies the endpoints read."""

    def __init__(self) -> None:
        self.sizes: list[int] = []


SEEN = _Seen()


class _Raw:
    """A raw ASGI endpoint (as ``POST /ocsp`` is): no exception handler sees its errors."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        SEEN.sizes.append(size)
        await PlainTextResponse(str(size))(scope, receive, send)


def _router(_platform: Any) -> APIRouter:
    router = APIRouter()

    @router.post("/test/default")
    async def default(request: Request) -> Response:
        body = await request.body()
        SEEN.sizes.append(len(body))
        return PlainTextResponse(str(len(body)))

    @router.post("/test/form")
    @body_limit(ROUTE)
    async def form(request: Request) -> Response:
        fields = await request.form()
        return PlainTextResponse(str(len(fields)))

    @body_limit(ROUTE)
    async def fast(request: Request) -> Response:
        body = await request.body()
        SEEN.sizes.append(len(body))
        return PlainTextResponse(str(len(body)))

    router.routes.append(Route("/test/fast", fast, methods=["POST"]))
    router.add_route("/test/raw", body_limit(ROUTE)(_Raw()), methods=["POST"])  # type: ignore[arg-type]
    return router


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    SEEN.sizes.clear()
    app = create_app(
        cast(Any, object()), get_metrics(), routers={"test-limits": _router}, max_body_bytes=DEFAULT
    )
    assert isinstance(app, GovtrustApp)
    assert ("POST", "/test/fast") in app.fast_routes and (
        "POST",
        "/test/raw",
    ) in app.fast_routes
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


class _Stream:
    """A chunked body of ``total`` bytes made on demand; counts what the server pulled."""

    def __init__(self, total: int, prefix: bytes = b"") -> None:
        self.total = total
        self.prefix = prefix
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.prefix:
            self.pulled += len(self.prefix)
            yield self.prefix
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield b"x" * CHUNK


def _refused(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "RESOURCE_EXHAUSTED"
    assert f"limit of {limit} bytes" in error["message"]
    assert response.headers["connection"] == "close"
    assert response.headers["x-request-id"]  # answered inside the observability middleware


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "limit"),
    [("/test/default", DEFAULT), ("/test/fast", ROUTE), ("/test/raw", ROUTE)],
)
async def test_bodies_up_to_the_limit_pass_and_bigger_ones_are_413(
    client: httpx.AsyncClient, path: str, limit: int
) -> None:
    ok = await client.post(path, content=b"a" * limit)
    assert ok.status_code == 200 and ok.text == str(limit)
    _refused(await client.post(path, content=b"a" * (limit + 1)), limit)
    assert SEEN.sizes == [limit]  # the refused body never reached the endpoint whole


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/test/default", "/test/fast", "/test/raw", "/test/form"])
async def test_a_streamed_body_is_refused_while_it_streams(
    client: httpx.AsyncClient, path: str
) -> None:
    """A 1 TiB chunked body: refused after the limit, the rest never pulled from the client."""
    form = path == "/test/form"  # one endless field of a well-formed multipart body
    stream = _Stream(1 << 40, b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n' * form)
    limit = DEFAULT if path == "/test/default" else ROUTE
    headers = {"content-type": "multipart/form-data; boundary=x"} if form else {}
    response = await client.post(path, content=stream, headers=headers)
    _refused(response, limit)
    assert stream.pulled <= limit + CHUNK
    assert SEEN.sizes == []


@pytest.mark.asyncio
async def test_a_declared_length_over_the_limit_is_refused_unread(
    client: httpx.AsyncClient,
) -> None:
    stream = _Stream(1 << 40)
    response = await client.post(
        "/test/fast", content=stream, headers={"content-length": str(1 << 40)}
    )
    _refused(response, ROUTE)
    assert stream.pulled == 0


def test_the_default_is_a_setting() -> None:
    assert load_settings(env={}).http_max_body_bytes == 1024 * 1024
    env = {"GOVTRUST_HTTP_MAX_BODY_BYTES": "65536"}
    assert load_settings(env=env).http_max_body_bytes == 65536
    with pytest.raises(ConfigError, match="http_max_body_bytes"):
        load_settings(env={"GOVTRUST_HTTP_MAX_BODY_BYTES": "10"})


@pytest.mark.asyncio
async def test_an_answer_before_the_body_is_read_closes_the_connection(
    client: httpx.AsyncClient,
) -> None:
    unread = await client.post("/no/such/route", content=b"a" * 100)
    assert unread.status_code == 404 and unread.headers["connection"] == "close"
    read = await client.post("/test/fast", content=b"a" * 100)
    assert read.status_code == 200 and "connection" not in read.headers
    bodiless = await client.get("/no/such/route")
    assert bodiless.status_code == 404 and "connection" not in bodiless.headers
