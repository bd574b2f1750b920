"""ASGI middleware: request id, metrics, one access line per request, and the crash net.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses and contextvars behave. It is the
outermost layer inside Starlette's error middleware: an exception no handler answered is mapped
here (``govtrust.http.errors.error_response``), logged once with its traceback, and never
re-raised into the server. A request uvicorn cancels because the drain's grace is over is
answered 503 "the server is shutting down; retry" (uvicorn itself would answer 500, which
proxies and clients do not retry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from govtrust.errors import ShuttingDown
from govtrust.http.errors import error_response
from govtrust.observability.logs import access_log
from govtrust.observability.metrics import Metrics
from govtrust.rpc.context import accept_request_id, bind_principal, bind_request_id

log = logging.getLogger("govtrust.http")

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED_ROUTE = "<unmatched>"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _draining(scope: Scope) -> bool:
    """Whether the serving process drains (``app.state.draining``, set by the drain)."""
    state = getattr(scope.get("app"), "state", None)
    return bool(getattr(state, "draining", False))


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality, no ids from the URL)."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class ObservabilityMiddleware:
    """Binds the request id, echoes it as ``x-request-id``, counts and logs every request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = accept_request_id(_header(scope, REQUEST_ID_HEADER))
        bind_request_id(request_id)
        bind_principal(None)
        state = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when its graceful shutdown times out (the drain's
            # grace is over); answered here, the request ends as an answer, not a cancellation
            if state["started"] or not _draining(scope):
                raise
            await error_response(ShuttingDown())(scope, receive, send_with_id)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception as exc:  # the crash net: no input may crash a worker
            if state["started"]:
                log.error(
                    "error after the response started",
                    exc_info=exc,
                    extra={"request_id": request_id},
                )
            else:
                await error_response(exc)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            status = int(state["status"])
            self.metrics.observe_http(scope["method"], route, status, elapsed)
            access_log(
                event="http",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                request_id=request_id,
            )
