"""HTTP adapter of the CA's public endpoints: OCSP, CRLs, CA certificates, time-stamping.

* ``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/<base64>`` (RFC 6960 A.1);
  always an ``application/ocsp-response`` (garbage gets ``malformedRequest``, never a 500).
  A cached response is returned on the event loop without a thread hop or database access.
* ``GET /crl/<ca>.crl`` and ``GET /crl/<ca>-delta.crl``: DER CRL with caching headers.
* ``GET /ca/<name>.crt``: DER certificate of a CA, responder or the TSA.
* ``POST /tsa`` (``application/timestamp-query`` → ``application/timestamp-reply``), signed by
  the ECDSA TSA; ``POST /tsa/sm2`` the same, signed SM3-with-SM2 by the SM2 TSA (a separate
  path rather than content negotiation: RFC 3161 clients cannot express an algorithm choice).

Request bodies are limited while they stream (:mod:`govtrust.http.limits`): 16 KiB for OCSP and
TSA requests, answered 413 with the JSON error document beyond that.

The routes are plain Starlette endpoints on the ``APIRouter`` (no body validation layer), so
the OCSP hot path costs little more than the dict look-up.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import threading
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ca import ocsp, tsa
from ca.authority import CertificateAuthority, authority_for
from govtrust.errors import NotFound
from govtrust.http.limits import body_limit
from govtrust.rpc.offload import run_sync

if TYPE_CHECKING:
    from govtrust.platform import Platform

OCSP_RESPONSE = "application/ocsp-response"
# Request body limits (413 beyond, see govtrust.http.limits): what the protocol layers accept.
MAX_BODY = ocsp.MAX_REQUEST_BYTES
MAX_TSA_BODY = tsa.MAX_REQUEST_BYTES


class _Lazy:
    """The authority, bootstrapped on first use (in the worker pool, not at import)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.value: CertificateAuthority | None = None
        self.lock = threading.Lock()

    def get(self) -> CertificateAuthority:
        if self.value is None:
            with self.lock:
                if self.value is None:
                    self.value = authority_for(self.platform)
        return self.value


def _http_date(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


class _OcspPost:
    """``POST /ocsp`` as a raw ASGI endpoint: no Request/Response objects on the hot path, and a
    cached answer is sent without leaving the event loop."""

    def __init__(self, lazy: _Lazy) -> None:
        self.lazy = lazy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        more = True
        while more:  # at most MAX_BODY: the body limit (govtrust.http.limits) refuses more
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        authority = self.lazy.value
        der = ocsp.cached(authority.ctx, body) if authority is not None else None
        if der is None:
            der = await run_sync(self.lazy.get().ocsp, body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", OCSP_RESPONSE.encode()),
                    (b"content-length", str(len(der)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": der})


def router(platform: Platform) -> APIRouter:
    """The CA's HTTP routes for one process."""
    lazy = _Lazy(platform)
    api = APIRouter()

    async def answer_ocsp(body: bytes) -> Response:
        authority = lazy.value
        if authority is not None:
            hit = ocsp.cached(authority.ctx, body)
            if hit is not None:
                return Response(hit, media_type=OCSP_RESPONSE)
        der = await run_sync(lambda: lazy.get().ocsp(body))
        return Response(der, media_type=OCSP_RESPONSE)

    async def ocsp_get(request: Request) -> Response:
        encoded = urllib.parse.unquote(request.path_params["encoded"])
        try:
            body = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            body = b""
        return await answer_ocsp(body)

    async def crl_get(request: Request) -> Response:
        name: str = request.path_params["name"]
        delta = name.endswith("-delta")
        ca = name.removesuffix("-delta")
        info = await run_sync(lambda: lazy.get().crl(ca, delta=delta))
        next_update = (
            info.next_update if info.next_update.tzinfo else info.next_update.replace(tzinfo=UTC)
        )
        max_age = max(0, min(3600, int((next_update - datetime.now(UTC)).total_seconds())))
        headers = {
            "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
            "Last-Modified": _http_date(info.this_update),
            "Expires": _http_date(next_update),
            "ETag": f'"{ca}-{info.crl_number}"',
        }
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(info.der, media_type="application/pkix-crl", headers=headers)

    async def ca_get(request: Request) -> Response:
        name: str = request.path_params["name"]
        authority = await run_sync(lazy.get)
        try:
            issuer = authority.hierarchy.get(name)
        except NotFound as exc:
            return JSONResponse({"error": {"code": "NOT_FOUND", "message": exc.message}}, 404)
        return Response(
            issuer.der,
            media_type="application/pkix-cert",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    def tsa_endpoint(sm2: bool) -> Any:
        @body_limit(MAX_TSA_BODY)
        async def endpoint(request: Request) -> Response:
            return await tsa_post(request, sm2)

        return endpoint

    async def tsa_post(request: Request, sm2: bool) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/timestamp-query":
            return JSONResponse(
                {
                    "error": {
                        "code": "INVALID_ARGUMENT",
                        "message": "Content-Type must be application/timestamp-query",
                    }
                },
                415,
            )
        body = await request.body()
        result = await run_sync(lambda: lazy.get().timestamp(body, sm2=sm2))
        return Response(
            result.der,
            status_code=200 if result.granted else 400,
            media_type="application/timestamp-reply",
        )

    fast_post = body_limit(MAX_BODY)(_OcspPost(lazy))
    api.add_route("/ocsp", fast_post, methods=["POST"])  # type: ignore[arg-type]
    api.add_route("/ocsp/", fast_post, methods=["POST"])  # type: ignore[arg-type]
    api.add_route("/ocsp/{encoded:path}", ocsp_get, methods=["GET"])
    api.add_route("/crl/{name}.crl", crl_get, methods=["GET"])
    api.add_route("/ca/{name}.crt", ca_get, methods=["GET"])
    api.add_route("/tsa", tsa_endpoint(False), methods=["POST"])
    api.add_route("/tsa/sm2", tsa_endpoint(True), methods=["POST"])
    return api
