"""mTLS authentication: a verified client certificate becomes a ``service`` principal.

Runs a real grpc.aio server with ``require_client_auth`` and certificates made on the fly, and
checks the default mapping (subject CN, no roles) and a registered resolver (roles).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from cryptography import x509

from govtrust.observability.metrics import get_metrics
from govtrust.principal import Principal
from govtrust.rpc import auth
from govtrust.rpc.auth import Authenticator, certificate_subject
from govtrust.rpc.context import current_principal
from govtrust.rpc.interceptors import GovtrustInterceptor
from tests.server.pki import Pki, key_pem, pem


async def _whoami(_request: bytes, _context: Any) -> bytes:
    principal = current_principal()
    return f"{principal.actor} {','.join(sorted(principal.roles))}".encode()


class _TlsServer:
    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> int:
        authenticator = Authenticator(cast(Any, None), trust_insecure_loopback=False)
        self.server = grpc.aio.server(
            interceptors=[GovtrustInterceptor(authenticator, get_metrics())]
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "test.Tls", {"WhoAmI": grpc.unary_unary_rpc_method_handler(_whoami)}
                ),
            )
        )
        credentials = grpc.ssl_server_credentials(
            [(key_pem(self.pki.server_key), pem(self.pki.server))],
            root_certificates=pem(self.pki.ca),
            require_client_auth=True,
        )
        port = self.server.add_secure_port("127.0.0.1:0", credentials)
        await self.server.start()
        return port

    def __enter__(self) -> int:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def tls_port(pki: Pki) -> Iterator[int]:
    with _TlsServer(pki) as port:
        yield port


def _call(pki: Pki, port: int, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pem(pki.ca),
        private_key=key_pem(pki.client_key),
        certificate_chain=pem(pki.client),
    )
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        response = channel.unary_unary("/test.Tls/WhoAmI", None, None)(
            b"", metadata=metadata, timeout=10
        )
        return cast(bytes, response).decode()


def test_client_certificate_maps_to_a_service_principal(pki: Pki, tls_port: int) -> None:
    assert _call(pki, tls_port) == "service:licence-system "


def test_registered_resolver_assigns_roles(pki: Pki, tls_port: int) -> None:
    def resolver(_platform: Any, cert: x509.Certificate) -> Principal | None:
        if certificate_subject(cert) != "licence-system":
            return None
        return Principal(kind="service", subject="licence-system", roles=frozenset({"verifier"}))

    auth.register_certificate_resolver(resolver)
    try:
        assert _call(pki, tls_port) == "service:licence-system verifier"
    finally:
        auth.reset_resolvers()


def test_bearer_token_over_mtls_still_goes_to_the_token_resolver(pki: Pki, tls_port: int) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(pki, tls_port, (("authorization", "Bearer t"),))
    assert cast(grpc.Call, info.value).code() == grpc.StatusCode.UNAUTHENTICATED
