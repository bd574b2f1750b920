"""CA fixtures: a registry stand-in, an authority on both databases, CSR helpers, openssl and
pkilint runners, and a live HTTP server (uvicorn on a free port) serving the CA routes."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from ca.authority import CertificateAuthority
from ca.config import CaConfig
from ca.directory import CitizenRecord, InMemoryDirectory, LegalPersonRecord, SealRecord
from ca.models import CaCertificate
from govtrust.db import Database
from govtrust.principal import Principal
from hsm import MasterKey, SoftKeyStore
from idp.registry import IdentityRegistry
from tests.conftest import require_tool

PUBLIC_URL = "http://pki.example.gov.cn"
CITIZEN_ID_NUMBER = "11010519491231002X"
USCC = "91350100M000100Y43"
OPERATOR = Principal("service", "ca-desk", frozenset({"ca-operator"}), citizen_id="c-rep")
VERIFIER = Principal("service", "bank", frozenset({"verifier"}))


def ocsp_query(authority: CertificateAuthority, row: CaCertificate) -> asn1_ocsp.OCSPResponse:
    """Ask the authority's OCSP responder about ``row`` (a SHA-1 CertID, as openssl sends)."""
    ca = authority.hierarchy.ca(row.issuer)
    request = asn1_ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    {
                        "req_cert": {
                            "hash_algorithm": {"algorithm": "sha1"},
                            "issuer_name_hash": ca.name_hash["sha1"],
                            "issuer_key_hash": ca.key_hash["sha1"],
                            "serial_number": int(row.serial, 16),
                        }
                    }
                ]
            }
        }
    )
    return asn1_ocsp.OCSPResponse.load(authority.ocsp(request.dump()))


def make_directory() -> InMemoryDirectory:
    """Citizens (active, inactive, low assurance), a legal person with its representative, a
    seal, and an inactive legal person."""
    directory = InMemoryDirectory()
    directory.add_citizen(CitizenRecord("c-rep", "张三", CITIZEN_ID_NUMBER, 3))
    directory.add_citizen(CitizenRecord("c-gone", "李四", "110105194912310045", 3, active=False))
    directory.add_citizen(CitizenRecord("c-low", "王五", "110105194912310061", 1))
    directory.add_citizen(
        CitizenRecord(
            "c-ouyang", "欧阳修", "110105194912310088", 2, surname="欧阳", given_name="修"
        )
    )
    directory.add_legal_person(
        LegalPersonRecord("lp-1", USCC, "福州示例科技有限公司"), representatives=("c-rep",)
    )
    directory.add_legal_person(
        LegalPersonRecord("lp-gone", "11100000000013338W", "已注销单位", active=False),
        representatives=("c-rep",),
    )
    directory.add_seal(
        SealRecord(
            "seal-1",
            "lp-1",
            USCC,
            "福州示例科技有限公司",
            "福州示例科技有限公司合同专用章",
            "contract",
        )
    )
    return directory


@pytest.fixture
def directory() -> InMemoryDirectory:
    return make_directory()


@pytest.fixture
def soft_keystore(database: Database) -> Iterator[SoftKeyStore]:
    store = SoftKeyStore(database, MasterKey.generate())
    yield store
    store.close()


@pytest.fixture
def authority(
    database: Database, soft_keystore: SoftKeyStore, directory: InMemoryDirectory
) -> CertificateAuthority:
    """A bootstrapped authority (soft key store) on SQLite and PostgreSQL."""
    return CertificateAuthority.open(
        database, soft_keystore, CaConfig(public_base_url=PUBLIC_URL), directory
    )


def new_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def make_csr(
    key: object | None = None, *, cn: str = "ignored-by-the-ca", pem: bool = True
) -> bytes:
    """A CSR signed by ``key`` (a fresh P-256 key by default)."""
    private = key or new_key()
    csr = (
        cx.CertificateSigningRequestBuilder()
        .subject_name(cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(private, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)


def pem(der: bytes, kind: str = "CERTIFICATE") -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {kind}-----\n{body}-----END {kind}-----\n"


@dataclass
class ChainFiles:
    """The hierarchy written to disk for openssl: root alone, and every CA certificate."""

    root: Path
    all: Path
    directory: Path

    def ca(self, name: str) -> Path:
        return self.directory / f"{name}.pem"


def write_chain(authority: CertificateAuthority, directory: Path) -> ChainFiles:
    directory.mkdir(parents=True, exist_ok=True)
    everything = []
    for issuer in authority.chain(include_responders=True):
        (directory / f"{issuer.name}.pem").write_text(pem(issuer.der))
        if issuer.role in ("root", "issuing"):
            everything.append(pem(issuer.der))
    (directory / "all.pem").write_text("".join(everything))
    return ChainFiles(directory / "root.pem", directory / "all.pem", directory)


def assert_verifies_and_lints(chain: ChainFiles, directory: Path, name: str, der: bytes) -> Path:
    """openssl verifies the certificate against ``chain`` and pkilint's PKIX lint finds nothing;
    returns the DER file written (for further lints)."""
    path = directory / f"{name}.pem"
    path.write_text(pem(der))
    out = openssl("verify", "-CAfile", str(chain.root), "-untrusted", str(chain.all), str(path))
    assert f"{path}: OK" in out
    der_path = directory / f"{name}.der"
    der_path.write_bytes(der)
    assert pkilint("lint_pkix_cert", "--document-format", "DER", str(der_path)) == "", name
    return der_path


def openssl(*args: str, input: bytes | None = None, check: bool = True) -> str:
    """Run the real openssl; returns stdout+stderr."""
    binary = require_tool("openssl")
    result = subprocess.run(
        [binary, *args], input=input, capture_output=True, timeout=60, check=False
    )
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{output}")
    return output


def pkilint(tool: str, *args: str) -> str:
    """Run a pkilint console script; returns its findings at ERROR and above ('' when clean)."""
    venv_bin = Path(sys.executable).parent
    path = venv_bin / tool
    binary = str(path) if path.exists() else shutil.which(tool)
    if binary is None:
        require_tool(tool)
        raise AssertionError("unreachable")
    result = subprocess.run(
        [binary, "lint", "-s", "ERROR", *args], capture_output=True, timeout=120, check=False
    )
    return (result.stdout + result.stderr).decode(errors="replace").strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """uvicorn serving an app in a background thread."""

    def __init__(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = port

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def ca_softhsm_token(softhsm_folder: Path) -> object:
    """A SoftHSM2 token for the CA tests, beside tests/hsm's in the process's one configuration
    (``SOFTHSM2_CONF`` set: tests/conftest.py ``softhsm_folder``); a unique label, as for
    ``softhsm_token``."""
    from tests.hsm.conftest import make_softhsm_token

    return make_softhsm_token(softhsm_folder, label=f"gt-ca-{uuid.uuid4().hex[:8]}")


# --- the real registry as the CA's directory --------------------------------------------------


@dataclass
class RegistryCa:
    """An authority whose subject directory is the identity registry itself
    (:class:`idp.ca_directory.RegistryDirectory`, as the server wires it), and the registry's
    ids of the people in it."""

    authority: CertificateAuthority
    registry: IdentityRegistry
    rep_id: str  # 张三, CITIZEN_ID_NUMBER, legal representative of USCC
    agent_id: str  # an agent of USCC holding certificate.apply
    outsider_id: str  # an agent of USCC holding only seal.apply
    ouyang_id: str  # 欧阳修 (compound surname)
    gone_id: str  # a cancelled citizen
    company_id: str  # USCC


@pytest.fixture
def registry_ca(database: Database, soft_keystore: SoftKeyStore) -> RegistryCa:
    """A bootstrapped authority over the real registry directory (SQLite and PostgreSQL)."""
    from idp.basedata import import_legal_persons, import_population
    from idp.ca_directory import CERTIFICATE_APPLY, RegistryDirectory
    from idp.pii import PiiCodec
    from idp.types import IdentityRef, StatusAction

    registrar = Principal("user", "registrar", frozenset({"identity-registrar"}))
    codec = PiiCodec.from_master_key(MasterKey.generate())
    registry = IdentityRegistry(database, codec)
    people = {
        CITIZEN_ID_NUMBER: "张三",
        "110105194912310062": "王五",
        "110105194912310097": "赵六",
        "110105194912310089": "欧阳修",
        "110105194912310046": "李四",
    }
    # the base data raise the registered to assurance 2 (the certificate profiles need it)
    rows = "".join(f"{name},{number}\n" for number, name in people.items())
    import_population(database, codec, f"name,id_number\n{rows}", principal=registrar)
    import_legal_persons(
        database,
        codec,
        f"uscc,name,legal_representative_id_number\n{USCC},福州示例科技有限公司,{CITIZEN_ID_NUMBER}\n",
        principal=registrar,
    )

    def citizen(name: str, number: str) -> str:
        return registry.register_citizen(registrar, name=name, id_number=number).id

    rep_id = citizen("张三", CITIZEN_ID_NUMBER)
    agent_id = citizen("王五", "110105194912310062")
    outsider_id = citizen("赵六", "110105194912310097")
    ouyang_id = citizen("欧阳修", "110105194912310089")
    gone_id = citizen("李四", "110105194912310046")
    registry.update_status(registrar, IdentityRef(id=gone_id), StatusAction.CANCEL, "deceased")
    company = registry.register_legal_person(
        registrar,
        uscc=USCC,
        name="福州示例科技有限公司",
        legal_representative=IdentityRef(id=rep_id),
    )
    rep = Principal("user", "rep", frozenset(), citizen_id=rep_id)
    for agent, scope in ((agent_id, CERTIFICATE_APPLY), (outsider_id, "seal.apply")):
        registry.grant_agent(
            rep,
            legal_person=IdentityRef(id=company.id),
            agent=IdentityRef(id=agent),
            scopes=[scope],
        )
    authority = CertificateAuthority.open(
        database, soft_keystore, CaConfig(public_base_url=PUBLIC_URL), RegistryDirectory(registry)
    )
    return RegistryCa(
        authority, registry, rep_id, agent_id, outsider_id, ouyang_id, gone_id, company.id
    )
