"""``govtrust serve`` with two deliberately slow endpoints, for the drain test.

``VerifyService.VerifyCertificate`` and ``GET /test/slow`` announce on stderr that they started,
then take ``SLOW_SECONDS`` to answer. Registered through the public registries
(``register_servicer``, ``register_router``), exactly as a package plugs in its own.
Usage: ``python tests/server/slow_server.py serve --data-dir … --grpc-port 0 --http-port 0``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from fastapi import APIRouter

from govtrust.cli import main
from govtrust.http.app import register_router
from govtrust.server.services import register_servicer
from govtrust.v1 import verify_pb2, verify_pb2_grpc

SLOW_SECONDS = 2.0


class SlowVerifyService(verify_pb2_grpc.VerifyServiceServicer):
    """Answers VerifyCertificate after SLOW_SECONDS; everything else stays UNIMPLEMENTED."""

    def __init__(self, _platform: Any) -> None:
        pass

    async def VerifyCertificate(
        self, request: Any, context: Any
    ) -> verify_pb2.VerifyCertificateResponse:
        print("slow grpc call started", file=sys.stderr, flush=True)
        await asyncio.sleep(SLOW_SECONDS)
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
    register_servicer("govtrust.v1.VerifyService", SlowVerifyService)
    register_router("test-slow", slow_router)
    sys.exit(main(sys.argv[1:]))
