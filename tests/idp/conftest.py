"""Fixtures of the identity-registry tests: keys, a registry, and an in-process gRPC server.

The server is a real ``grpc.aio`` server on a free port, run on its own event loop in a thread,
with the platform's :class:`GovtrustInterceptor` (authentication, error mapping, access log).
Callers authenticate with bearer tokens that a test token resolver maps to principals, so each
test can call as a registrar, a verifier, a legal representative or nobody.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from govtrust.api.access import RPC_ACCESS
from govtrust.api.identity import IdentityServicer, servicer
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.observability.metrics import get_metrics
from govtrust.principal import Principal
from govtrust.rpc.access import gate
from govtrust.rpc.auth import Authenticator, set_token_resolver
from govtrust.rpc.interceptors import GovtrustInterceptor
from govtrust.v1 import identity_pb2_grpc
from hsm.master import MasterKey
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from tests.unchanged import unchanged

ALLOW_LISTED_USCC = "91350203M0001QAY9B"
REGISTRAR = Principal("user", "registrar-1", frozenset({"identity-registrar"}))
VERIFIER = Principal("service", "bank-1", frozenset({"verifier"}))
NOBODY = Principal("service", "no-roles", frozenset())
ADMIN = Principal("user", "admin-1", frozenset({"admin"}))


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def codec(master_key: MasterKey) -> PiiCodec:
    return PiiCodec.from_master_key(master_key)


@pytest.fixture
def registry(database: Database, codec: PiiCodec) -> Iterator[IdentityRegistry]:
    registry = IdentityRegistry(database, codec, uscc_allow_list=frozenset({ALLOW_LISTED_USCC}))
    yield registry
    registry.reader.close()


@dataclass
class _Platform:
    settings: Settings
    db: Database
    master_key: MasterKey


@dataclass
class GrpcHandle:
    """A running server: a stub and per-principal bearer tokens."""

    address: str
    channel: grpc.Channel
    stub: identity_pb2_grpc.IdentityServiceStub
    platform: _Platform
    tokens: dict[str, Principal] = field(default_factory=dict)

    def metadata(self, principal: Principal | None) -> tuple[tuple[str, str], ...]:
        if principal is None:
            return ()
        token = secrets.token_urlsafe(16)
        self.tokens[token] = principal
        return (("authorization", f"Bearer {token}"),)

    def call(self, method: str, request: Any, principal: Principal | None = REGISTRAR) -> Any:
        """Call ``method`` as ``principal`` and return the response."""
        return getattr(self.stub, method)(request, metadata=self.metadata(principal), timeout=30)

    def fails(
        self, method: str, request: Any, principal: Principal | None = REGISTRAR
    ) -> grpc.RpcError:
        """Call ``method`` expecting an error; return it. The refused call changed nothing (no
        row, no audit record, no data file)."""
        with (
            unchanged(self.platform.db, None, self.platform.settings.data_dir),
            pytest.raises(grpc.RpcError) as info,
        ):
            self.call(method, request, principal)
        return info.value


def violations(error: grpc.RpcError) -> dict[str, str]:
    """Field → description of the BadRequest details of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: dict[str, str] = {}
    if status is None:
        return found
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


@pytest.fixture
def grpc_server(database: Database, master_key: MasterKey, tmp_path: Path) -> Iterator[GrpcHandle]:
    """IdentityService on a free loopback port, behind the platform interceptor."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "uscc-allow-list.txt").write_text(f"# real codes\n{ALLOW_LISTED_USCC}\n")
    platform = _Platform(Settings(data_dir=data_dir), database, master_key)
    tokens: dict[str, Principal] = {}

    def resolve(_platform: Any, token: str) -> Principal:
        from govtrust.errors import Unauthenticated

        if token not in tokens:
            raise Unauthenticated("unknown test token")
        return tokens[token]

    set_token_resolver(resolve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="idp-grpc", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            interceptors=[
                GovtrustInterceptor(
                    Authenticator(platform, trust_insecure_loopback=False),  # type: ignore[arg-type]
                    get_metrics(),
                    authorise=gate(RPC_ACCESS),  # the server's RPC access rules
                )
            ]
        )
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    service = servicer(platform)
    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    handle = GrpcHandle(
        address, channel, identity_pb2_grpc.IdentityServiceStub(channel), platform, tokens
    )
    try:
        yield handle
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        assert isinstance(service, IdentityServicer)
        service.registry.reader.close()
        set_token_resolver(None)
