"""The ASGI application (FastAPI) served next to gRPC, and the registry later issues add routes to.

Built-in routes: ``/healthz``, ``/readyz``, ``/metrics`` (:mod:`govtrust.http.health`). Other
packages contribute routers (OCSP, CRL, TSA, OIDC, ``/verify`` pages) either by naming a
factory in :data:`ROUTERS` or with :func:`register_router`; a factory takes the ``Platform`` and
returns an ``APIRouter``. As with servicers, ``register_router`` affects only the calling process
(not ``--workers N``); production wiring goes in :data:`ROUTERS`. Routes are thin: parse,
``await run_sync(domain_fn, ...)``, and let domain errors propagate — the handlers map them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request

from govtrust.http.errors import install_error_handlers
from govtrust.http.middleware import ObservabilityMiddleware
from govtrust.server.metrics import Metrics

if TYPE_CHECKING:
    from govtrust.platform import Platform

RouterFactory = Callable[["Platform"], APIRouter]

# Name → "package.module:factory"; later issues add their line, e.g. "ocsp": "ca.http:ocsp_router".
ROUTERS: dict[str, str] = {
    "oidc": "govtrust.api.oidc_http:router",
    "ca": "govtrust.api.ca_http:router",
}

_registered: dict[str, RouterFactory] = {}


def register_router(name: str, factory: RouterFactory) -> None:
    """Serve the routes of ``factory(platform)`` (replaces an earlier one of the same name)."""
    _registered[name] = factory


def unregister_router(name: str) -> None:
    """Stop serving a registered router (tests)."""
    _registered.pop(name, None)


def router_factories() -> dict[str, RouterFactory]:
    """Configured factories first, then run-time registrations (which win on a name clash)."""
    factories: dict[str, RouterFactory] = {}
    for name, reference in ROUTERS.items():
        module_name, _, attribute = reference.partition(":")
        factories[name] = getattr(importlib.import_module(module_name), attribute)
    factories.update(_registered)
    return factories


def get_platform(request: Request) -> Platform:
    """FastAPI dependency: the process's ``Platform``."""
    platform: Platform = request.app.state.platform
    return platform


def create_app(
    platform: Platform, metrics: Metrics, *, only: Collection[str] | None = None
) -> FastAPI:
    """The HTTP application of one process (``only``: serve just these named routers)."""
    from govtrust.http.health import health_router

    app = FastAPI(
        title="govtrust",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.platform = platform
    app.state.draining = False
    install_error_handlers(app)
    app.include_router(health_router())
    for name, factory in router_factories().items():
        if only is None or name in only:
            app.include_router(factory(platform))
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    return app
