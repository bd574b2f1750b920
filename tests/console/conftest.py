"""Console fixtures: a wired in-process platform (SQLite, soft key store, bootstrapped CA) with
staff (reviewer, maker, filing), a company with its representative and an agent, each with a
password; the HTTP app (OIDC provider + console) and a login helper that walks the real
authorization-code flow through the provider's pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from govtrust.config import Settings
from govtrust.http.errors import install_error_handlers
from govtrust.platform import Platform
from govtrust.principal import Principal
from govtrust.server.wiring import open_wired
from idp.oidc.factory import provider_for
from idp.runtime import identity_registry_for
from idp.types import IdentityRef
from tests.oidc.conftest import free_port
from tests.seal.conftest import resident_id

REGISTRAR = Principal("user", "registrar", frozenset({"identity-registrar", "admin"}))
PASSWORD = "correct horse battery"
USCC = "91350100M000100Y43"
COMPANY = "福州示例有限公司"
# login name → roles (staff)
STAFF = {"reviewer": "seal-reviewer", "maker": "seal-maker", "filing": "seal-filing"}


@dataclass
class ConsoleEnv:
    """The platform, the people, and the served app's base URL."""

    platform: Platform
    base: str
    port: int
    company_id: str
    rep_id: str
    agent_id: str
    agent_number: str
    staff_ids: dict[str, str] = field(default_factory=dict)

    def app(self) -> FastAPI:
        from govtrust.api.console import router as console_router
        from govtrust.api.oidc_http import router as oidc_router

        app = FastAPI()
        install_error_handlers(app)
        app.include_router(oidc_router(self.platform))
        app.include_router(console_router(self.platform))
        return app


def make_env(tmp_path: Path, **settings: Any) -> ConsoleEnv:
    port = free_port()
    platform = open_wired(Settings(data_dir=tmp_path / "data", http_port=port, **settings))
    registry = identity_registry_for(platform)
    provider = provider_for(platform)
    rep = registry.register_citizen(
        REGISTRAR, name="张三", id_number=resident_id("11010519491231002")
    )
    agent_number = resident_id("11010519800101001")
    agent = registry.register_citizen(REGISTRAR, name="李四", id_number=agent_number)
    company = registry.register_legal_person(
        REGISTRAR, uscc=USCC, name=COMPANY, legal_representative=IdentityRef(id=rep.id)
    )
    env = ConsoleEnv(
        platform, f"http://127.0.0.1:{port}", port, company.id, rep.id, agent.id, agent_number
    )
    provider.passwords.set_password(
        REGISTRAR, identity_id=rep.id, login_name="company", password=PASSWORD
    )
    provider.passwords.set_password(
        REGISTRAR, identity_id=agent.id, login_name="agent", password=PASSWORD
    )
    for number, (login, role) in enumerate(STAFF.items(), start=1):
        staff = registry.register_staff(
            REGISTRAR,
            name=f"{login}-员工",
            department_code="350100-SCJ",
            department_name="福州市市场监督管理局",
            employee_number=f"E{number:03d}",
            roles=[role],
        )
        env.staff_ids[login] = staff.id
        provider.passwords.set_password(
            REGISTRAR, identity_id=staff.id, login_name=login, password=PASSWORD
        )
    return env


@pytest.fixture
def console_env(tmp_path: Path) -> Iterator[ConsoleEnv]:
    env = make_env(tmp_path)
    yield env
    env.platform.close()


def form_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in page"
    return match.group(1)


def login(http: TestClient, login_name: str) -> str:
    """Log in at the console through the provider's pages; the console's CSRF token."""
    response = http.get("/console/login")
    assert response.status_code == 303
    for _ in range(10):
        location = response.headers["location"]
        path = urlsplit(location)._replace(scheme="", netloc="").geturl()
        if path.startswith("/console/") and "callback" not in path:
            break
        response = http.get(path)
        if response.status_code == 200 and 'name="login_name"' in response.text:
            response = http.post(
                f"{path}/password",
                data={
                    "csrf": form_value(response.text, "csrf"),
                    "login_name": login_name,
                    "password": PASSWORD,
                },
            )
        elif response.status_code == 200 and 'name="person_id"' in response.text:
            response = http.post(
                f"{path}/acting",
                data={
                    "csrf": form_value(response.text, "csrf"),
                    "person_id": form_value(response.text, "person_id"),
                },
            )
        assert response.status_code in (302, 303), response.text[:2000]
    page = http.get("/console/", follow_redirects=True)
    assert page.status_code == 200, page.text
    return form_value(page.text, "csrf")


@contextmanager
def seal_grpc(platform: Platform) -> Iterator[Any]:
    """The production SealService servicer on a free loopback port behind the platform
    interceptor, bearer tokens resolved by the platform's own OIDC provider (as the server
    does); yields the stub."""
    import asyncio
    import threading

    import grpc
    import grpc.aio

    from govtrust.api.access import RPC_ACCESS
    from govtrust.api.seal import servicer
    from govtrust.observability.metrics import get_metrics
    from govtrust.rpc.access import gate
    from govtrust.rpc.auth import Authenticator, set_token_resolver
    from govtrust.rpc.interceptors import GovtrustInterceptor
    from govtrust.v1 import seal_pb2_grpc

    set_token_resolver(lambda p, token: provider_for(p).principal_for_token(token))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="console-grpc", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            interceptors=[
                GovtrustInterceptor(
                    Authenticator(platform, trust_insecure_loopback=False),
                    get_metrics(),
                    authorise=gate(RPC_ACCESS),
                )
            ]
        )
        seal_pb2_grpc.add_SealServiceServicer_to_server(servicer(platform), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield seal_pb2_grpc.SealServiceStub(channel)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        set_token_resolver(None)


def citizen_token(env: ConsoleEnv, login_name: str) -> str:
    """A real access token of a citizen: a portal client registered at the provider, the
    citizen logs in with a password through the authorization-code flow (PKCE, consent)."""
    from tests.oidc.conftest import ADMIN, REDIRECT, pkce_pair
    from tests.oidc.flows import authorize, code_from, exchange, password_login

    provider = provider_for(env.platform)
    registered = provider.clients.register(
        ADMIN, client_name="agent portal", redirect_uris=[REDIRECT]
    )
    with TestClient(env.app(), base_url=env.base, follow_redirects=False) as http:
        client_id, secret = registered.client.client_id, registered.client_secret
        verifier, challenge = pkce_pair()
        started = authorize(http, client_id, code_challenge=challenge, code_challenge_method="S256")
        code = code_from(password_login(http, started, login=login_name))["code"]
        tokens = exchange(http, client_id, secret, code, verifier).json()
    return str(tokens["access_token"])
