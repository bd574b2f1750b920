"""The ASGI application (FastAPI) served next to gRPC.

Built-in routes: ``/healthz``, ``/readyz``, ``/metrics`` (:mod:`govtrust.http.health`). The
other routes (OCSP, CRL, TSA, OIDC, ``/verify`` pages) come from router factories handed to
:func:`create_app`; the server passes the table of :mod:`govtrust.server.adapters`. A factory
takes the ``Platform`` and returns an ``APIRouter``. Routes are thin: parse,
``await run_sync(domain_fn, ...)``, and let domain errors propagate — the handlers map them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from govtrust.config import DEFAULT_HTTP_MAX_BODY_BYTES
from govtrust.http.errors import install_error_handlers
from govtrust.http.limits import BodyLimitMiddleware
from govtrust.http.middleware import ObservabilityMiddleware
from govtrust.observability.metrics import Metrics

if TYPE_CHECKING:
    from govtrust.platform import Platform

RouterFactory = Callable[["Platform"], APIRouter]


def get_platform(request: Request) -> Platform:
    """FastAPI dependency: the process's ``Platform``."""
    platform: Platform = request.app.state.platform
    return platform


class _FastRoute:
    """One exact-path plain Starlette route called directly: what the router and the
    exception middleware would have put into the scope, without their per-request cost."""

    def __init__(self, route: Route, handlers: tuple[dict[Any, Any], dict[Any, Any]]) -> None:
        self.route = route
        self.app = route.app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        scope["endpoint"] = self.route.endpoint
        scope["path_params"] = {}
        scope["starlette.exception_handlers"] = self.handlers
        await self.app(scope, receive, send)


class GovtrustApp(FastAPI):
    """FastAPI with a fast lane: a request for an exact path served by a plain Starlette
    ``Route`` (the OCSP and token endpoints) goes straight to it through the observability
    middleware, skipping the middleware stack and the linear route matching (about half of
    the framework's per-request CPU, see docs/performance.md). Everything else, and any route
    with path parameters, takes the normal path."""

    fast_routes: Mapping[tuple[str, str], ASGIApp] = MappingProxyType({})

    def enable_fast_lane(
        self,
        routes: Iterable[BaseRoute],
        metrics: Metrics,
        max_body_bytes: int = DEFAULT_HTTP_MAX_BODY_BYTES,
    ) -> None:
        """Index the exact-path plain routes among ``routes`` (those of the routers included
        without a prefix); call once the exception handlers are installed. The lane keeps the
        body limit (:mod:`govtrust.http.limits`, default ``max_body_bytes``)."""
        exception_handlers: dict[Any, Any] = {}
        status_handlers: dict[Any, Any] = {}
        for key, handler in self.exception_handlers.items():
            (status_handlers if isinstance(key, int) else exception_handlers)[key] = handler
        table: dict[tuple[str, str], ASGIApp] = {}
        for route in routes:
            if type(route) is not Route or route.param_convertors or not route.methods:
                continue
            lane = ObservabilityMiddleware(
                BodyLimitMiddleware(
                    _FastRoute(route, (exception_handlers, status_handlers)), max_body_bytes
                ),
                metrics,
            )
            for method in route.methods:
                table.setdefault((method, route.path), lane)
        self.fast_routes = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.root_path:
            lane = self.fast_routes.get((scope["method"], scope["path"]))
            if lane is not None:
                scope["app"] = self
                await lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    platform: Platform,
    metrics: Metrics,
    *,
    routers: Mapping[str, RouterFactory],
    max_body_bytes: int = DEFAULT_HTTP_MAX_BODY_BYTES,
) -> FastAPI:
    """The HTTP application of one process: the built-in routes and ``factory(platform)`` of
    each of ``routers``, in order (``max_body_bytes``: the body limit of routes that declare
    none, see :mod:`govtrust.http.limits`)."""
    from govtrust.http.health import health_router

    app = GovtrustApp(
        title="govtrust",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.platform = platform
    app.state.draining = False
    install_error_handlers(app)
    app.include_router(health_router())
    plain_routes: list[BaseRoute] = []
    for factory in routers.values():
        router = factory(platform)
        app.include_router(router)
        plain_routes += router.routes
    app.add_middleware(BodyLimitMiddleware, default=max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)  # outermost: logs the 413s
    app.enable_fast_lane(plain_routes, metrics, max_body_bytes)
    return app
