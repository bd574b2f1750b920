"""``/healthz`` (the process is up), ``/readyz`` (it can do work), ``/metrics`` (Prometheus).

``/readyz`` checks the database (``SELECT 1``) and the key store (``ping()`` when the backend
offers one, else ``list()``), each with a timeout, and answers 503 naming the failed check —
by exception class only; details go to the log, since hosts and DSNs are not for the public.
It also answers 503 while the process drains, so load balancers stop sending work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from govtrust.observability import metrics
from govtrust.rpc.offload import run_sync

if TYPE_CHECKING:
    from govtrust.platform import Platform

log = logging.getLogger("govtrust.http")

CHECK_TIMEOUT_SECONDS = 3.0


def check_database(platform: Platform) -> None:
    """Raise unless the database answers ``SELECT 1``."""
    with platform.db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_keystore(platform: Platform) -> None:
    """Raise unless the key store answers a cheap call."""
    ping: Callable[[], object] | None = getattr(platform.keystore, "ping", None)
    if callable(ping):
        ping()
    else:
        platform.keystore.list()


CHECKS: dict[str, Callable[[Platform], None]] = {
    "database": check_database,
    "keystore": check_keystore,
}


async def _run_check(name: str, check: Callable[[Platform], None], platform: Platform) -> str:
    try:
        await asyncio.wait_for(run_sync(check, platform), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("readiness check %s timed out", name)
        return "failed: timeout"
    except Exception as exc:  # a failed check is an answer, not a crash
        log.warning("readiness check %s failed", name, exc_info=exc)
        return f"failed: {type(exc).__name__}"
    return "ok"


def health_router() -> APIRouter:
    """The built-in operational routes."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        platform: Platform = request.app.state.platform
        names = list(CHECKS)
        results = await asyncio.gather(*(_run_check(n, CHECKS[n], platform) for n in names))
        checks = dict(zip(names, results, strict=True))
        if request.app.state.draining:
            checks["server"] = "failed: draining"
        ready = all(result == "ok" for result in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        body = await run_sync(metrics.render)
        return Response(content=body, media_type=metrics.CONTENT_TYPE)

    return router
