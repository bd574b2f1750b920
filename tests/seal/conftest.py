"""Seal fixtures: a registry with a company, its representative and agents; a bootstrapped CA;
the seal service over both; a one-page PDF; and helpers to drive a seal to ACTIVE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import pytest
from fastapi import Request  # module level: FastAPI resolves the route's annotation here

from ca.authority import CertificateAuthority
from ca.config import CaConfig
from ca.directory import InMemoryDirectory
from govtrust.db import Database
from govtrust.principal import Principal
from hsm import MasterKey, SoftKeyStore
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from idp.types import IdentityRef
from seal.authority import CaSealAuthority
from seal.lifecycle import Application, Making, SealService
from seal.owners import RegistryOwners
from seal.pdf import SealPdf
from seal.types import SealKind, SealView
from tests.unchanged import unchanged

USCC = "91350100M000100Y43"
OTHER_USCC = "11100000000013338W"
REGISTRAR = Principal("user", "registrar", frozenset({"identity-registrar"}))
REVIEWER = Principal("user", "reviewer-1", frozenset({"seal-reviewer"}))
MAKER = Principal("user", "maker-1", frozenset({"seal-maker"}))
FILING = Principal("user", "filing-1", frozenset({"seal-filing"}))
NOBODY = Principal("service", "nobody", frozenset())


def resident_id(first17: str) -> str:
    """A valid GB 11643 number from its first 17 digits."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


@dataclass
class World:
    """Everything a seal test needs."""

    db: Database
    keystore: SoftKeyStore
    registry: IdentityRegistry
    authority: CertificateAuthority
    seal_authority: CaSealAuthority
    service: SealService
    sealer: SealPdf
    company_id: str
    rep: Principal
    agent: Principal
    user: Principal  # a citizen with no relation to the company
    user_id: str
    ca_port: int

    def active_seal(
        self, kind: SealKind = SealKind.CONTRACT, name: str = "", business_number: str = ""
    ) -> SealView:
        """Apply, approve, make, file and issue a seal of the company."""
        s = self.service
        seal = s.apply(
            self.rep, Application(IdentityRef(id=self.company_id), kind, name, business_number)
        )
        s.review(REVIEWER, seal.id, True, "ok")
        s.make(MAKER, seal.id, Making())
        s.file(FILING, seal.id, "", "")
        return s.issue(FILING, seal.id, "")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_ca(world: World) -> Iterator[str]:
    """The CA's OCSP responder, CRLs and certificates served over HTTP at the URL written into
    its certificates (pdfsig/NSS and pyHanko fetch revocation information from there)."""
    import base64
    import threading
    import time

    import uvicorn
    from fastapi import FastAPI, Response

    app = FastAPI()
    authority = world.authority

    @app.post("/ocsp")
    async def ocsp_post(request: Request) -> Response:
        return Response(
            authority.ocsp(await request.body()), media_type="application/ocsp-response"
        )

    @app.get("/ocsp/{encoded:path}")
    async def ocsp_get(encoded: str) -> Response:
        from urllib.parse import unquote

        der = base64.b64decode(unquote(encoded))
        return Response(authority.ocsp(der), media_type="application/ocsp-response")

    @app.get("/crl/{name}.crl")
    async def crl(name: str) -> Response:
        delta = name.endswith("-delta")
        info = authority.crl(name.removesuffix("-delta"), delta=delta)
        return Response(info.der, media_type="application/pkix-crl")

    @app.get("/ca/{name}.crt")
    async def ca_cert(name: str) -> Response:
        return Response(authority.hierarchy.get(name).der, media_type="application/pkix-cert")

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=world.ca_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{world.ca_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def one_page_pdf(text: str = "Seal here: (stamp)") -> bytes:
    """A minimal valid one-page A4 PDF with a line of Helvetica text."""
    content = f"BT /F1 14 Tf 72 700 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return _assemble(objects)


def pages_pdf(count: int) -> bytes:
    """A minimal PDF with ``count`` A4 pages."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"] * count
    return _assemble(objects)


def _assemble(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@pytest.fixture
def world(database: Database) -> Iterator[World]:
    with open_world(database) as opened:
        yield opened


@contextmanager
def open_world(database: Database, keystore: SoftKeyStore | None = None) -> Iterator[World]:
    """A :class:`World` on ``database`` (the fixture's body; module-scoped tests call it); on
    ``keystore`` when given (e.g. a PKCS#11 store), else a fresh soft key store."""
    master = MasterKey.generate()
    keystore = keystore or SoftKeyStore(database, master)
    registry = IdentityRegistry(database, PiiCodec.from_master_key(master))

    def citizen(name: str, first17: str) -> str:
        return registry.register_citizen(REGISTRAR, name=name, id_number=resident_id(first17)).id

    rep_id = citizen("张三", "11010519491231002")
    agent_id = citizen("李四", "11010519800101001")
    user_id = citizen("王五", "11010519900101003")
    company = registry.register_legal_person(
        REGISTRAR,
        uscc=USCC,
        name="福州示例科技有限公司",
        legal_representative=IdentityRef(id=rep_id),
    )
    rep_principal = Principal("user", "rep", frozenset(), citizen_id=rep_id)
    registry.grant_agent(
        rep_principal,
        legal_person=IdentityRef(id=company.id),
        agent=IdentityRef(id=agent_id),
        scopes=["seal.apply", "seal.use"],
    )
    port = free_port()
    authority = CertificateAuthority.open(
        database,
        keystore,
        CaConfig(public_base_url=f"http://127.0.0.1:{port}"),
        InMemoryDirectory(),
    )
    seal_authority = CaSealAuthority(authority, database)
    service = SealService(database, keystore, seal_authority, RegistryOwners(registry))
    registry.status_listeners.add(service.on_identity_status)
    try:
        yield World(
            database,
            keystore,
            registry,
            authority,
            seal_authority,
            service,
            SealPdf(service),
            company.id,
            rep_principal,
            Principal("user", "agent", frozenset(), citizen_id=agent_id),
            Principal("user", "user", frozenset(), citizen_id=user_id),
            user_id,
            port,
        )
    finally:
        keystore.close()


# --- gRPC -----------------------------------------------------------------------------------


@dataclass
class GrpcHandle:
    """SealService on a free loopback port behind the platform interceptor."""

    stub: object
    tokens: dict[str, Principal]
    address: str = ""
    world: World | None = None

    def token(self, principal: Principal) -> str:
        """A bearer token for ``principal``."""
        import secrets

        token = secrets.token_urlsafe(16)
        self.tokens[token] = principal
        return token

    def call(self, method: str, request: object, principal: Principal | None) -> object:
        import secrets

        metadata: tuple[tuple[str, str], ...] = ()
        if principal is not None:
            token = secrets.token_urlsafe(16)
            self.tokens[token] = principal
            metadata = (("authorization", f"Bearer {token}"),)
        return getattr(self.stub, method)(request, metadata=metadata, timeout=120)

    def fails(self, method: str, request: object, principal: Principal | None) -> object:
        """Call ``method`` expecting an error; return it. With ``world``, the refused call changed
        nothing (no row of any table, no key)."""
        import grpc

        check = unchanged(self.world.db, self.world.keystore) if self.world else nullcontext()
        with check, pytest.raises(grpc.RpcError) as info:
            self.call(method, request, principal)
        return info.value


@pytest.fixture
def grpc_seal(world: World, tmp_path: object) -> Iterator[GrpcHandle]:
    import asyncio
    import threading

    import grpc
    import grpc.aio

    from govtrust.api.access import RPC_ACCESS
    from govtrust.api.seal import SealServicer
    from govtrust.config import Settings
    from govtrust.errors import Unauthenticated
    from govtrust.observability.metrics import get_metrics
    from govtrust.rpc.access import gate
    from govtrust.rpc.auth import Authenticator, set_token_resolver
    from govtrust.rpc.interceptors import GovtrustInterceptor
    from govtrust.v1 import seal_pb2_grpc

    tokens: dict[str, Principal] = {}

    def resolve(_platform: object, token: str) -> Principal:
        if token not in tokens:
            raise Unauthenticated("unknown test token")
        return tokens[token]

    @dataclass
    class _Platform:
        settings: Settings
        db: Database

    platform = _Platform(Settings(), world.db)
    set_token_resolver(resolve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="seal-grpc", daemon=True)
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
        seal_pb2_grpc.add_SealServiceServicer_to_server(
            SealServicer(world.service, world.sealer), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield GrpcHandle(seal_pb2_grpc.SealServiceStub(channel), tokens, f"127.0.0.1:{port}", world)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        set_token_resolver(None)
