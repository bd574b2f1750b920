"""A tiny test CA (root → department seal certificate) and a soft key store for licence tests,
and the parties licence issuance needs on a real platform (:func:`set_up_issuing_department`,
shared by the bulk, CLI and production tests and ``bench/license.py``).

The department's key lives in the soft key store (as in production); the root key is a plain
``cryptography`` key, because the CA package is not what these tests are about.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from govtrust.db import Database
from govtrust.principal import Principal
from hsm.keystore import KeyAlgorithm, KeyStore
from hsm.master import MasterKey
from hsm.soft import SoftKeyStore
from idp.types import IdentityRef
from license import catalogue
from license.days import licence_day
from license.runtime import LicenceRuntime
from license.signed_data import LicenceMetadata
from license.signer import LicenceSigner
from seal.lifecycle import Application, Making
from seal.types import SealKind, SealView
from tests.seal.conftest import FILING, MAKER, REGISTRAR, REVIEWER, resident_id
from tests.unchanged import Snapshot, unchanged

DEPT_USCC = "11430000006122244L"
OTHER_USCC = "91350100M000100Y43"
TYPE_CODE = "11100000000013338W011"
ORG_ID = x509.ObjectIdentifier("2.5.4.97")
ISSUER = catalogue.EXAMPLE_ISSUER  # the department that issues licences on a real platform
COMPANY = OTHER_USCC  # the company that holds them


def active_official_seal(runtime: LicenceRuntime, rep: Principal, dept_id: str) -> SealView:
    """An official seal of department ``dept_id``, applied for by its representative ``rep``,
    taken through review, making and filing to active."""
    seals = runtime.seals.service
    seal = seals.apply(rep, Application(IdentityRef(id=dept_id), SealKind.OFFICIAL))
    seals.review(REVIEWER, seal.id, True, "ok")
    seals.make(MAKER, seal.id, Making())
    seals.file(FILING, seal.id, "", "")
    return seals.issue(FILING, seal.id, "")


@dataclass(frozen=True)
class IssuingDepartment:
    """What :func:`set_up_issuing_department` registered."""

    director: Principal  # the department's head, its legal representative
    director_id: str
    department_id: str
    representative_id: str  # the company's legal representative
    company_id: str
    seal: SealView  # the department's active official seal


def set_up_issuing_department(runtime: LicenceRuntime) -> IssuingDepartment:
    """Register what issuing a licence on a fresh platform needs: the department :data:`ISSUER`
    (head 赵局长) with an active official seal, and the company :data:`COMPANY` (legal
    representative 张三) that holds the licences. Seeding the catalogue is the caller's."""
    registry = runtime.service.registry
    head = registry.register_citizen(
        REGISTRAR, name="赵局长", id_number=resident_id("11010519700101001")
    )
    rep = registry.register_citizen(
        REGISTRAR, name="张三", id_number=resident_id("11010519491231002")
    )
    dept = registry.register_legal_person(
        REGISTRAR, uscc=ISSUER, name="测试市市场监督管理局",
        legal_representative=IdentityRef(id=head.id),
    )  # fmt: skip
    company = registry.register_legal_person(
        REGISTRAR, uscc=COMPANY, name="福州示例科技有限公司",
        legal_representative=IdentityRef(id=rep.id),
    )  # fmt: skip
    director = Principal("user", "director", frozenset(), citizen_id=head.id)
    seal = active_official_seal(runtime, director, dept.id)
    return IssuingDepartment(director, head.id, dept.id, rep.id, company.id, seal)


@dataclass
class MiniCa:
    """A root and the means to issue leaf certificates under it."""

    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        uscc: str | None = DEPT_USCC,
        name: str = "测试市市场监督管理局",
        ca: bool = False,
        days: int = 365,
        not_before: datetime | None = None,
        issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ) -> x509.Certificate:
        """Issue a certificate for ``public_key`` (a seal certificate unless ``ca``)."""
        attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, name))
        if uscc is not None:
            attrs.append(x509.NameAttribute(ORG_ID, f"NTRCN-{uscc}"))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
        start = not_before or datetime.now(UTC) - timedelta(days=1)
        issuer_cert, issuer_key = issuer or (self.root, self.root_key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(issuer_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=not ca,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        return builder.sign(issuer_key, hashes.SHA256())


def make_ca(common_name: str = "govtrust test root") -> MiniCa:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC) - timedelta(days=400)
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return MiniCa(root, key)


@pytest.fixture(scope="session")
def test_ca() -> MiniCa:
    return make_ca()


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database (for tests that need a key store but not both backends)."""
    target = tmp_path / "govtrust.db"
    shutil.copyfile(sqlite_template, target)
    db = Database(f"sqlite:///{target}")
    yield db
    db.dispose()


@pytest.fixture
def keystore(sqlite_db: Database) -> Iterator[SoftKeyStore]:
    store = SoftKeyStore(sqlite_db, MasterKey.generate())
    yield store
    store.close()


def make_signer(
    keystore: SoftKeyStore, ca: MiniCa, *, uscc: str | None = DEPT_USCC, **kwargs: object
) -> LicenceSigner:
    """A department signer: a P-256 key in the key store, certified by ``ca``."""
    ref = keystore.generate("licence-seal", KeyAlgorithm.EC_P256)
    public = ref.load_public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    cert = ca.issue(public, uscc=uscc, **kwargs)  # type: ignore[arg-type]
    return LicenceSigner(keystore, ref, (cert,))


def same(keystore: KeyStore) -> AbstractContextManager[Snapshot]:
    """:func:`tests.unchanged.unchanged` over a bare soft key store: its keys and every row of
    its database (what a refused signing or verification in the unit tests must leave)."""
    assert isinstance(keystore, SoftKeyStore)
    return unchanged(keystore._db, keystore)  # the store's own database (no public accessor)


@pytest.fixture
def signer(keystore: SoftKeyStore, test_ca: MiniCa) -> LicenceSigner:
    return make_signer(keystore, test_ca)


def sample_metadata(**overrides: object) -> LicenceMetadata:
    from license.identifiers import build_identifier

    ident = build_identifier(TYPE_CODE, DEPT_USCC, "20230000403", 1)
    values: dict[str, object] = {
        "name": "营业执照",
        "type_code": TYPE_CODE,
        "number": "湘市监(2023)第403号",
        "identifier": str(ident),
        "issuer_name": "测试市市场监督管理局",
        "issuer_code": DEPT_USCC,
        "issue_date": licence_day(),
        "holder_name": "福州示例科技有限公司",
        "holder_code": "91350100M000100Y43",
        "holder_code_type": "001",
        "valid_from": licence_day(),
        "valid_until": None,
        "fields": {"KZ_MC": "福州示例科技有限公司", "KZ_FDDBR": "张三", "KZ_ZCZB": "100万元"},
        "status_index": 7,
        "status_uri": "https://gov.example/status/11430000006122244L",
    }
    values.update(overrides)
    return LicenceMetadata(**values)  # type: ignore[arg-type]


def with_malformed_issuer(token: str) -> str:
    """``token`` with its leaf certificate's issuer name made unparsable (one UTF8String byte
    set to 0xFF): the certificate still loads, its ``issuer`` raises ValueError when read."""
    import base64
    import json

    from cryptography.hazmat.primitives.serialization import Encoding

    from license.signer import b64url, b64url_decode

    head, *rest = token.split(".")
    header = json.loads(b64url_decode(head))
    der = base64.b64decode(header["x5c"][0])
    name = x509.load_der_x509_certificate(der).issuer.public_bytes()
    at = name.index(b"\x0c")  # the first UTF8String's tag; its length, then the value
    broken = name[: at + 2] + b"\xff" + name[at + 3 :]
    header["x5c"][0] = base64.b64encode(der.replace(name, broken, 1)).decode()
    assert x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0])).public_bytes(
        Encoding.DER
    )
    return ".".join([b64url(json.dumps(header).encode()), *rest])
