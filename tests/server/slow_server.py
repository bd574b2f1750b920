"""``govtrust serve`` with two deliberately slow endpoints, for the drain test.

``VerifyService.VerifyCertificate`` and ``GET /test/slow`` announce on stderr that they started,
then take ``SLOW_SECONDS`` to answer (``SLOW_SERVER_SECONDS`` in the environment overrides
it; ``SLOW_SERVER_GRACE`` shortens the drain's grace period, so that a call outlives it;
``SLOW_SERVER_QUIET`` and ``SLOW_SERVER_LAME_DUCK`` set how long it serves on after SIGTERM).
Served in place of the production tables' ``VerifyService`` and next to their routers
(``serve(settings, servicers=…, routers=…)``).
Usage: ``python tests/server/slow_server.py serve --data-dir … --grpc-port 0 --http-port 0``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from fastapi import APIRouter

from govtrust.cli import build_parser, serve_settings
from govtrust.rpc.offload import run_sync
from govtrust.server import process
from govtrust.server.adapters import ROUTERS, SERVICERS
from govtrust.server.run import serve
from govtrust.v1 import verify_pb2, verify_pb2_grpc

SLOW_SECONDS = float(os.environ.get("SLOW_SERVER_SECONDS", "2.0"))
if "SLOW_SERVER_GRACE" in os.environ:
    process.DRAIN_GRACE_SECONDS = float(os.environ["SLOW_SERVER_GRACE"])
if "SLOW_SERVER_QUIET" in os.environ:
    process.DRAIN_QUIET_SECONDS = float(os.environ["SLOW_SERVER_QUIET"])
if "SLOW_SERVER_LAME_DUCK" in os.environ:
    process.DRAIN_LAME_DUCK_SECONDS = float(os.environ["SLOW_SERVER_LAME_DUCK"])


class SlowVerifyService(verify_pb2_grpc.VerifyServiceServicer):
    """Answers VerifyCertificate after SLOW_SECONDS; everything else stays UNIMPLEMENTED."""

    def __init__(self, _platform: Any) -> None:
        pass

    async def VerifyCertificate(
        self, request: Any, context: Any
    ) -> verify_pb2.VerifyCertificateResponse:
        print("slow grpc call started", file=sys.stderr, flush=True)
        await run_sync(time.sleep, SLOW_SECONDS)  # domain work, as a real servicer's
        print("slow grpc call finished", file=sys.stderr, flush=True)
        return verify_pb2.VerifyCertificateResponse()


def slow_router(_platform: Any) -> APIRouter:
    router = APIRouter()

    @router.get("/test/slow")
    async def slow() -> dict[str, bool]:
        print("slow http call started", file=sys.stderr, flush=True)
        await asyncio.sleep(SLOW_SECONDS)
        return {"done": True}

    return router


if __name__ == "__main__":
    arguments = build_parser().parse_args(sys.argv[1:])
    assert arguments.command == "serve", "usage: slow_server.py serve --data-dir … --grpc-port …"
    sys.exit(
        serve(
            serve_settings(arguments),
            servicers={**SERVICERS, "govtrust.v1.VerifyService": SlowVerifyService},
            routers={**ROUTERS, "test-slow": slow_router},
        )
    )
