"""The production LicenseService end to end (both backends): a real platform (data dir, master
key, soft key store, bootstrapped CA), the department's official seal made active through the
seal service, IssueLicense over gRPC with the sealed PDF, and checks with only the CA root."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from sqlalchemy import select

from govtrust.api.license import LicenseServicer, servicer
from govtrust.audit import AuditRecord
from govtrust.config import Settings
from govtrust.errors import FailedPrecondition
from govtrust.platform import Platform
from govtrust.principal import SYSTEM, Principal
from govtrust.server.wiring import open_wired
from govtrust.v1 import common_pb2, license_pb2
from idp.types import IdentityRef
from license import catalogue
from license.checking import Verdict, check_qr, check_signed_data
from license.models import LicenceRow
from license.qr import TrustList
from license.runtime import LicenceRuntime, runtime_for
from license.status_list import verify_status_list
from seal.types import SealView
from tests.license.conftest import COMPANY, ISSUER, active_official_seal
from tests.license.test_catalogue import GOOD_BL
from tests.license.test_grpc import Handle, _serve
from tests.seal.conftest import REGISTRAR, resident_id
from tests.unchanged import unchanged

PERMIT_CODE = ISSUER + "101"  # a licence type held by citizens (code type 111)
PERMIT = catalogue.LicenceType(
    type_code=PERMIT_CODE,
    name="健康证明",
    name_en="Health certificate",
    defining_authority="测试市市场监督管理局",
    issuing_departments=(ISSUER,),
    holder_code_types=("111",),
    fields=(
        catalogue.FieldSpec("KZ_XM", "姓名", max_length=50, public=True),
        catalogue.FieldSpec("KZ_SFZH", "身份证号", catalogue.FieldType.RESIDENT_ID),
        catalogue.FieldSpec("KZ_LB", "类别", max_length=50),
    ),
    validity=catalogue.ValidityRule(default_years=1, max_years=1, long_term_allowed=False),
    layout={"page": "A4-portrait", "rows": [["KZ_XM"], ["KZ_SFZH"], ["KZ_LB"]]},
)
DEPT = Principal("service", "amr-system", frozenset({f"licence-issuer:{ISSUER}"}))


@dataclass
class Prod:
    """A production servicer on a real platform, and the parties of the tests."""

    handle: Handle
    platform: Platform
    runtime: LicenceRuntime
    seal: SealView
    director: Principal  # the department's legal representative
    root: x509.Certificate  # the ECDSA root: signed data, status lists, QR, PDF seals
    holder: Principal  # a citizen holding licences himself
    holder_id: str
    holder_number: str
    rep: Principal  # the company's legal representative
    agent: Principal  # an agent of the company with licence.apply
    seal_agent: Principal  # an agent of the company with seal.use only
    stranger: Principal
    stranger_id: str
    company_id: str

    def call(self, method: str, request: object, principal: Principal | None = DEPT) -> object:
        return self.handle.call(method, request, principal)

    def fails(self, method: str, request: object, principal: Principal | None = DEPT) -> object:
        return self.handle.fails(method, request, principal)

    def issue(self, *, skip_document: bool = False, **overrides: object) -> license_pb2.License:
        values: dict[str, Any] = {
            "type_code": catalogue.BUSINESS_LICENCE_CODE,
            "holder": license_pb2.LicenseHolder(
                code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY
            ),
            "fields": GOOD_BL,
            "valid_from": "2015-06-01",
            "skip_document": skip_document,
        }
        values.update(overrides)
        response = self.call("IssueLicense", license_pb2.IssueLicenseRequest(**values))
        licence: license_pb2.License = response.license  # type: ignore[attr-defined]
        return licence

    def issue_permit(self, *, skip_document: bool = False) -> license_pb2.License:
        """A citizen-held licence for ``holder`` (the ID number in the holder code and a field)."""
        return self.issue(
            type_code=PERMIT_CODE,
            holder=license_pb2.LicenseHolder(
                code_type=license_pb2.HOLDER_CODE_TYPE_RESIDENT_ID, code=self.holder_number
            ),
            fields={"KZ_XM": "王五", "KZ_SFZH": self.holder_number, "KZ_LB": "食品从业"},
            valid_from="",
            skip_document=skip_document,
        )


@pytest.fixture
def prod(database_url: str, tmp_path: Path) -> Iterator[Prod]:
    platform = open_wired(
        Settings(data_dir=tmp_path / "data", database_url=database_url, migrate=False)
    )
    try:
        with platform.db.transaction() as session:
            catalogue.seed_catalogue(session, SYSTEM)
            catalogue.define_type(session, Principal("user", "admin", frozenset({"admin"})), PERMIT)
        runtime = runtime_for(platform)
        registry = runtime.service.registry

        def citizen(name: str, first17: str) -> tuple[str, str]:
            number = resident_id(first17)
            return registry.register_citizen(REGISTRAR, name=name, id_number=number).id, number

        director_id, _ = citizen("赵局长", "11010519700101001")
        rep_id, _ = citizen("张三", "11010519491231002")
        agent_id, _ = citizen("李四", "11010519800101001")
        seal_agent_id, _ = citizen("钱七", "11010519850101001")
        holder_id, holder_number = citizen("王五", "11010519900101003")
        stranger_id, _ = citizen("孙八", "11010519950101001")
        dept = registry.register_legal_person(
            REGISTRAR, uscc=ISSUER, name="测试市市场监督管理局",
            legal_representative=IdentityRef(id=director_id),
        )  # fmt: skip
        company = registry.register_legal_person(
            REGISTRAR, uscc=COMPANY, name="福州示例科技有限公司",
            legal_representative=IdentityRef(id=rep_id),
        )  # fmt: skip
        rep = Principal("user", "rep", frozenset(), citizen_id=rep_id)
        for who, scopes in ((agent_id, ["licence.apply"]), (seal_agent_id, ["seal.use"])):
            registry.grant_agent(
                rep, legal_person=IdentityRef(id=company.id), agent=IdentityRef(id=who),
                scopes=scopes,
            )  # fmt: skip
        director = Principal("user", "director", frozenset(), citizen_id=director_id)
        seal = active_official_seal(runtime, director, dept.id)
        runtime.invalidate_trust_list()
        service = servicer(platform)
        assert isinstance(service, LicenseServicer)
        tokens: dict[str, Principal] = {}
        for stub in _serve(service, platform, tokens):  # type: ignore[arg-type]
            yield Prod(
                Handle(stub, runtime.trust_list(), runtime.roots, tokens, None, platform.db),
                platform,
                runtime,
                seal,
                director,
                runtime.roots[0],  # the ECDSA root (the SM2 root follows it)
                Principal("user", "holder", frozenset(), citizen_id=holder_id),
                holder_id,
                holder_number,
                rep,
                Principal("user", "agent", frozenset(), citizen_id=agent_id),
                Principal("user", "seal-agent", frozenset(), citizen_id=seal_agent_id),
                Principal("user", "stranger", frozenset(), citizen_id=stranger_id),
                stranger_id,
                company.id,
            )
    finally:
        platform.close()


def _lists(prod: Prod) -> dict[str, object]:
    token = prod.call(
        "GetStatusList", license_pb2.GetStatusListRequest(issuer_code=ISSUER)
    ).status_list_token  # type: ignore[attr-defined]
    return {ISSUER: verify_status_list(token, [prod.root])}


def test_production_issue_and_verify_with_only_the_root(prod: Prod) -> None:
    licence = prod.issue()
    assert licence.metadata.zzbfjg == "测试市市场监督管理局"
    assert licence.verification_url == prod.runtime.verify_url(licence.identifier)
    assert licence.document_digest.algorithm == common_pb2.DIGEST_ALGORITHM_SHA256

    # the document: sealed PDF whose digest the response announced, its use in the seal history
    doc = prod.call(
        "GetLicenseDocument", license_pb2.GetLicenseDocumentRequest(identifier=licence.identifier)
    )
    pdf: bytes = doc.document  # type: ignore[attr-defined]
    assert pdf.startswith(b"%PDF-") and b"/ByteRange" in pdf
    assert hashlib.sha256(pdf).digest() == licence.document_digest.value
    assert doc.media_type == "application/pdf"  # type: ignore[attr-defined]
    events, _ = prod.runtime.seals.service.history(prod.seal.id, include_uses=True)
    uses = [e for e in events if e.action == "seal_pdf"]
    assert len(uses) == 1 and uses[0].document_kind == "licence"
    assert uses[0].digest == licence.document_digest.value and uses[0].role == "department"

    # signed data with only the root; QR with the root and the exported trust list
    lists = _lists(prod)
    assert check_signed_data(licence.signed_data, [prod.root], lists).verdict is Verdict.VALID  # type: ignore[arg-type]
    trust = TrustList.load([prod.root], prod.runtime.trust_list_document(), strict=True)
    assert check_qr(licence.qr_payload, trust, lists).verdict is Verdict.VALID  # type: ignore[arg-type]
    for form in ("signed_data", "qr_payload", "identifier"):
        report = prod.call(
            "VerifyLicense",
            license_pb2.LicenseServiceVerifyLicenseRequest(
                evidence=license_pb2.LicenseEvidence(**{form: getattr(licence, form)})
            ),
        ).report  # type: ignore[attr-defined]
        assert report.verdict == common_pb2.VERDICT_VALID, (form, report)

    pdf_report = prod.call(
        "VerifyLicense",
        license_pb2.LicenseServiceVerifyLicenseRequest(
            evidence=license_pb2.LicenseEvidence(document=pdf)
        ),
    ).report  # type: ignore[attr-defined]
    assert pdf_report.verdict == common_pb2.VERDICT_VALID, pdf_report
    assert pdf_report.license.identifier == licence.identifier

    # one audit record for the issue, one for the seal's use, one for the document read
    with prod.platform.db.read() as session:
        actions = list(session.scalars(select(AuditRecord.action).order_by(AuditRecord.seq)))
    assert actions.count("licence.issue") == 1 and actions.count("seal.seal_pdf") == 1
    assert actions.count("licence.read.document") == 1


def test_skip_document_and_citizen_holder(prod: Prod) -> None:
    bare = prod.issue(skip_document=True)
    assert not bare.HasField("document_digest")
    missing = prod.fails(
        "GetLicenseDocument", license_pb2.GetLicenseDocumentRequest(identifier=bare.identifier)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    events, _ = prod.runtime.seals.service.history(prod.seal.id, include_uses=True)
    assert not [e for e in events if e.action == "seal_pdf"]


def test_an_inactive_seal_stops_issuance_and_changes_nothing(prod: Prod) -> None:
    prod.runtime.seals.service.suspend(prod.director, prod.seal.id, "lost", "key lost")
    error = prod.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(
            type_code=catalogue.BUSINESS_LICENCE_CODE,
            holder=license_pb2.LicenseHolder(
                code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY
            ),
            fields=GOOD_BL,
        ),
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "suspended" in error.details()  # type: ignore[attr-defined]
    with prod.platform.db.read() as session:
        assert session.scalars(select(LicenceRow)).first() is None


def test_licence_secrets_are_encrypted_at_rest(prod: Prod) -> None:
    from govtrust.db import Base
    from license.vault import SIGNED_DATA

    permit = prod.issue_permit()
    company = prod.issue()
    assert permit.metadata.czztdm == prod.holder_number and permit.document_digest.value
    clear = prod.runtime.service.stored(permit.identifier)
    assert clear.signed_data == permit.signed_data and clear.qr_payload == permit.qr_payload
    assert clear.document_pdf is not None
    assert hashlib.sha256(clear.document_pdf).digest() == permit.document_digest.value
    # Nothing in any table holds the ID number, the signed data (or its payload part), the
    # QR payload or a piece of the document in clear.
    needles = [
        prod.holder_number,
        prod.holder_number[:17],
        permit.signed_data.split(".")[1][:40],
        permit.qr_payload[4:44],
    ]
    pdf_piece = clear.document_pdf[:64]
    scanned = 0
    with prod.platform.db.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    if value is None:
                        continue
                    scanned += 1
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    if isinstance(value, bytes | bytearray):
                        assert pdf_piece not in value, f"{table.name}.{column.name}"
                        value = value.decode("latin-1")
                    for needle in needles:
                        assert needle not in str(value), f"{table.name}.{column.name} in clear"
    assert scanned > 100
    # A ciphertext moved to another row does not decrypt: rows cannot be swapped.
    with prod.platform.db.transaction() as session:
        a = session.get(LicenceRow, permit.identifier)
        b = session.get(LicenceRow, company.identifier)
        assert a is not None and b is not None
        b.signed_data = a.signed_data
    with (
        unchanged(prod.platform.db, prod.platform.keystore),
        pytest.raises(FailedPrecondition, match="does not decrypt"),
    ):
        prod.runtime.service.stored(company.identifier)
    assert (
        prod.runtime.service.vault.open_text(a.signed_data, SIGNED_DATA, permit.identifier)
        == permit.signed_data
    )


def test_concurrent_issuance_with_documents(prod: Prod) -> None:
    """Several departments' clients issuing at once: each licence is signed and sealed outside
    any transaction (the in-process TSA writes in its own), so nothing waits on a nested
    writer; every licence gets its own status index and its own recorded seal use."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        licences = list(pool.map(lambda _: prod.issue(), range(4)))
    assert len({x.identifier for x in licences}) == 4
    assert sorted(x.status_list_index for x in licences) == [0, 1, 2, 3]
    events, _ = prod.runtime.seals.service.history(prod.seal.id, include_uses=True)
    used = {e.digest for e in events if e.action == "seal_pdf"}
    assert used == {x.document_digest.value for x in licences}
