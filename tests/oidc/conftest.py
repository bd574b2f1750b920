"""Fixtures of the OIDC provider tests: a platform on SQLite and PostgreSQL, a registry with a
citizen, a company and its agent, a test CA for certificate login, and HTTP clients.

``oidc_env`` builds everything on the ``database`` fixture (both backends). ``live_server``
serves the same app with uvicorn on a free port in a thread, for the Node RP and Chromium tests.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient

from govtrust.config import Settings
from govtrust.db import Database
from govtrust.platform import Platform
from govtrust.principal import Principal
from govtrust.server.wiring import define_components
from hsm import open_keystore
from hsm.master import MasterKey
from idp.oidc.certlogin import ORGANIZATION_IDENTIFIER, ChainValidator
from idp.oidc.config import ProviderConfig
from idp.oidc.factory import install_provider
from idp.oidc.passwords import PasswordLogin, ThrottlePolicy
from idp.oidc.provider import Provider
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from idp.runtime import status_listeners_for
from idp.types import IdentityRef

REGISTRAR = Principal("user", "registrar", frozenset({"identity-registrar"}))
ADMIN = Principal("user", "admin", frozenset({"admin"}))
CITIZEN_ID = "11010519491231002X"
AGENT_ID = "110105198001010016"
USCC = "91350100M000100Y43"
PASSWORD = "correct horse battery"
REDIRECT = "https://rp.example.gov.cn/cb"
LOGOUT_REDIRECT = "https://rp.example.gov.cn/bye"


def id_check(first17: str) -> str:
    """GB 11643 check character."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return (
        first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class TestCa:
    """A root CA and helpers to issue login certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    revoked: set[int] = field(default_factory=set)

    @classmethod
    def create(cls, name: str = "govtrust test root") -> TestCa:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self, attrs: list[Any], *, expired: bool = False
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        start, end = (
            (now - timedelta(days=10), now - timedelta(days=1))
            if expired
            else (now - timedelta(days=1), now + timedelta(days=30))
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return key, cert

    def citizen_cert(self, number: str, name: str, **kw: Any) -> tuple[Any, x509.Certificate]:
        return self.issue(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, f"IDCCN-{number}"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            ],
            **kw,
        )

    def company_cert(self, uscc: str, name: str, **kw: Any) -> tuple[Any, x509.Certificate]:
        return self.issue(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                x509.NameAttribute(ORGANIZATION_IDENTIFIER, f"NTRCN-{uscc}"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            ],
            **kw,
        )

    def validator(self) -> ChainValidator:
        return ChainValidator([self.cert], is_revoked=lambda c: c.serial_number in self.revoked)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def sign_challenge(key: ec.EllipticCurvePrivateKey, challenge: str) -> str:
    return base64.b64encode(key.sign(challenge.encode(), ec.ECDSA(hashes.SHA256()))).decode()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


@dataclass
class OidcEnv:
    """Everything one OIDC test needs."""

    platform: Platform
    provider: Provider
    registry: IdentityRegistry
    ca: TestCa
    citizen_id: str
    agent_id: str
    company_id: str
    issuer: str
    port: int

    def register_client(self, **kw: Any) -> tuple[str, str | None]:
        params: dict[str, Any] = {
            "client_name": "Portal 门户",
            "redirect_uris": [REDIRECT],
            "post_logout_redirect_uris": [LOGOUT_REDIRECT],
        }
        params.update(kw)
        result = self.provider.clients.register(ADMIN, **params)
        return result.client.client_id, result.client_secret

    def app(self) -> FastAPI:
        from govtrust.api.oidc_http import router

        app = FastAPI()
        app.include_router(router(self.platform))
        return app

    def http(self) -> TestClient:
        return TestClient(self.app(), base_url=self.issuer, follow_redirects=False)


def make_env(database_url: str, tmp_path: Path, *, port: int | None = None) -> OidcEnv:
    port = port or free_port()
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, http_port=port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(database_url)
    master = MasterKey.generate()
    keystore = open_keystore("soft", database=db, master_key=master)
    platform = Platform(settings=settings, db=db, master_key=master, keystore=keystore)
    define_components(platform)
    ca = TestCa.create()
    issuer = settings.effective_public_base_url
    provider = Provider(
        db,
        keystore,
        ProviderConfig(issuer=issuer),
        key_deriver=master,
        validator=ca.validator(),
        passwords=PasswordLogin(
            db, policy=ThrottlePolicy(account_failures=3, address_failures=6, lock_seconds=60)
        ),
    )
    install_provider(platform, provider)
    registry = IdentityRegistry(
        db, PiiCodec.from_master_key(master), status_listeners=status_listeners_for(platform)
    )
    citizen = registry.register_citizen(
        REGISTRAR,
        name="张三",
        id_number=CITIZEN_ID,
        phone="13800138000",
        email="zhangsan@example.cn",
    )
    agent = registry.register_citizen(REGISTRAR, name="李四", id_number=AGENT_ID)
    company = registry.register_legal_person(
        REGISTRAR,
        uscc=USCC,
        name="福州示例有限公司",
        legal_representative=IdentityRef(id=citizen.id),
    )
    registry.grant_agent(
        REGISTRAR,
        legal_person=IdentityRef(id=company.id),
        agent=IdentityRef(id=agent.id),
        scopes=["seal.use"],
    )
    provider.passwords.set_password(
        REGISTRAR, identity_id=citizen.id, login_name="zhangsan", password=PASSWORD
    )
    return OidcEnv(platform, provider, registry, ca, citizen.id, agent.id, company.id, issuer, port)


@pytest.fixture
def oidc_env(database: Database, database_url: str, tmp_path: Path) -> Iterator[OidcEnv]:
    env = make_env(database_url, tmp_path)
    yield env
    env.platform.keystore.close()
    env.platform.db.dispose()


@pytest.fixture(params=["sqlite"])
def sqlite_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OidcEnv]:
    """One backend only (for the slow end-to-end tests)."""
    template: Path = request.getfixturevalue("sqlite_template")
    import shutil

    target = tmp_path / "govtrust.db"
    shutil.copyfile(template, target)
    env = make_env(f"sqlite:///{target}", tmp_path)
    yield env
    env.platform.keystore.close()
    env.platform.db.dispose()


class LiveServer:
    """uvicorn serving an app on 127.0.0.1:<port> in a background thread."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(sqlite_env: OidcEnv) -> Iterator[tuple[OidcEnv, LiveServer]]:
    with LiveServer(sqlite_env.app(), sqlite_env.port) as server:
        yield sqlite_env, server


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
