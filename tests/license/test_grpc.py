"""LicenseService over a real ``grpc.aio`` server with the platform interceptor (both backends).

The servicer runs over a :class:`LicenceService` whose signer is a test department key and
which makes no PDF documents; the production servicer (department seals, sealed PDFs) is
tested end to end in ``test_production.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from govtrust.api.license import LicenseServicer
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.observability.metrics import get_metrics
from govtrust.principal import SYSTEM, Principal
from govtrust.rpc.auth import Authenticator, set_token_resolver
from govtrust.rpc.interceptors import GovtrustInterceptor
from govtrust.v1 import common_pb2, license_pb2, license_pb2_grpc
from hsm.master import MasterKey
from hsm.soft import SoftKeyStore
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from idp.types import IdentityRef
from license import catalogue
from license.checking import Verdict, check_qr, check_signed_data
from license.issuance import LicenceService
from license.qr import TrustList
from license.status_list import verify_status_list
from tests.license.conftest import MiniCa, make_signer
from tests.license.test_catalogue import GOOD_BL
from tests.unchanged import unchanged

ISSUER = catalogue.EXAMPLE_ISSUER
DEPT = Principal("service", "amr-system", frozenset({f"licence-issuer:{ISSUER}"}))
OTHER_DEPT = Principal("service", "other", frozenset({"licence-issuer:91350100M000100Y43"}))
ADMIN = Principal("user", "admin-1", frozenset({"admin"}))
NOBODY = Principal("service", "no-roles", frozenset())
REGISTRAR = Principal("user", "registrar", frozenset({"identity-registrar"}))
COMPANY = "91350100M000100Y43"
CITIZEN_ID = "11010519491231002X"


@dataclass
class _Platform:
    settings: Settings
    db: Database
    master_key: MasterKey


@dataclass
class Handle:
    """A running server: a stub, per-principal bearer tokens and the trust material."""

    stub: license_pb2_grpc.LicenseServiceStub
    trust: TrustList
    roots: list[Any]
    tokens: dict[str, Principal] = field(default_factory=dict)
    store: SoftKeyStore | None = None
    db: Database | None = None

    def call(self, method: str, request: Any, principal: Principal | None = DEPT) -> Any:
        metadata: tuple[tuple[str, str], ...] = ()
        if principal is not None:
            token = secrets.token_urlsafe(16)
            self.tokens[token] = principal
            metadata = (("authorization", f"Bearer {token}"),)
        return getattr(self.stub, method)(request, metadata=metadata, timeout=30)

    def fails(self, method: str, request: Any, principal: Principal | None = DEPT) -> Any:
        """Call ``method`` expecting an error; return it. With ``db``, the refused call changed
        nothing (no row of any table, no key)."""
        with unchanged(self.db) if self.db else nullcontext(), pytest.raises(grpc.RpcError) as info:
            self.call(method, request, principal)
        return info.value


def violations(error: Any) -> dict[str, str]:
    """Field → description of the BadRequest details of an error."""
    status = rpc_status.from_call(error)
    found: dict[str, str] = {}
    if status is None:
        return found
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def _serve(
    servicer_obj: license_pb2_grpc.LicenseServiceServicer,
    platform: _Platform,
    tokens: dict[str, Principal],
) -> Iterator[license_pb2_grpc.LicenseServiceStub]:
    def resolve(_platform: Any, token: str) -> Principal:
        from govtrust.errors import Unauthenticated

        if token not in tokens:
            raise Unauthenticated("unknown test token")
        return tokens[token]

    set_token_resolver(resolve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="licence-grpc", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            interceptors=[
                GovtrustInterceptor(
                    Authenticator(platform, trust_insecure_loopback=False),  # type: ignore[arg-type]
                    get_metrics(),
                )
            ]
        )
        license_pb2_grpc.add_LicenseServiceServicer_to_server(servicer_obj, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield license_pb2_grpc.LicenseServiceStub(channel)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        set_token_resolver(None)


@pytest.fixture
def world(database: Database, test_ca: MiniCa, tmp_path: Path) -> Iterator[Handle]:
    master = MasterKey.generate()
    registry = IdentityRegistry(database, PiiCodec.from_master_key(master))
    person = registry.register_citizen(REGISTRAR, name="张三", id_number=CITIZEN_ID)
    registry.register_legal_person(
        REGISTRAR, uscc=COMPANY, name="福州示例科技有限公司",
        legal_representative=IdentityRef(id=person.id),
    )  # fmt: skip
    with database.transaction() as session:
        catalogue.seed_catalogue(session, SYSTEM)
    store = SoftKeyStore(database, master)
    signer = make_signer(store, test_ca, uscc=ISSUER)
    trust = TrustList([test_ca.root])
    trust.add(signer.chain)
    service = LicenceService(database, registry, lambda _dept: signer, master_key=master)
    platform = _Platform(Settings(data_dir=tmp_path), database, master)
    tokens: dict[str, Principal] = {}
    try:
        servicer_obj = LicenseServicer(service, roots=[test_ca.root], trust=trust)
        for stub in _serve(servicer_obj, platform, tokens):
            yield Handle(stub, trust, [test_ca.root], tokens, store, database)
    finally:
        store.close()
        registry.reader.close()


def _issue(world: Handle, **overrides: Any) -> license_pb2.License:
    values: dict[str, Any] = {
        "type_code": catalogue.BUSINESS_LICENCE_CODE,
        "issuer_code": ISSUER,
        "holder": license_pb2.LicenseHolder(
            code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY
        ),
        "fields": GOOD_BL,
        "valid_from": "2015-06-01",
    }
    values.update(overrides)
    response = world.call("IssueLicense", license_pb2.IssueLicenseRequest(**values))
    licence: license_pb2.License = response.license
    return licence


def _status_lists(world: Handle) -> dict[str, Any]:
    token = world.call(
        "GetStatusList", license_pb2.GetStatusListRequest(issuer_code=ISSUER)
    ).status_list_token
    return {ISSUER: verify_status_list(token, world.roots)}


# --- catalogue ----------------------------------------------------------------------------------


def test_get_and_list_types(world: Handle) -> None:
    got = world.call(
        "GetLicenseType",
        license_pb2.GetLicenseTypeRequest(type_code=catalogue.BUSINESS_LICENCE_CODE),
        NOBODY,
    ).license_type
    assert got.name == "营业执照"
    assert got.defining_authority.code == catalogue.SAMR_CODE
    assert [d.code for d in got.issuing_departments] == [ISSUER]
    assert list(got.holder_code_types) == [license_pb2.HOLDER_CODE_TYPE_USCC]
    assert "KZ_MC" in [f.name for f in got.fields]
    assert got.revision == 1 and got.validity.long_term_allowed

    page1 = world.call("ListLicenseTypes", license_pb2.ListLicenseTypesRequest(page_size=1))
    assert len(page1.license_types) == 1 and page1.next_page_token
    page2 = world.call(
        "ListLicenseTypes",
        license_pb2.ListLicenseTypesRequest(page_size=1, page_token=page1.next_page_token),
    )
    assert len(page2.license_types) == 1 and not page2.next_page_token
    codes = {page1.license_types[0].type_code, page2.license_types[0].type_code}
    assert codes == {catalogue.BUSINESS_LICENCE_CODE, catalogue.USCC_CERTIFICATE_CODE}
    none = world.call("ListLicenseTypes", license_pb2.ListLicenseTypesRequest(issuer_code=COMPANY))
    assert list(none.license_types) == []


def test_type_errors(world: Handle) -> None:
    bad = world.fails("GetLicenseType", license_pb2.GetLicenseTypeRequest(type_code="short"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "type_code" in violations(bad)
    missing = world.fails(
        "GetLicenseType", license_pb2.GetLicenseTypeRequest(type_code="11100000000013338W999")
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    token = world.fails("ListLicenseTypes", license_pb2.ListLicenseTypesRequest(page_token="x"))
    assert token.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(token)
    anonymous = world.fails("ListLicenseTypes", license_pb2.ListLicenseTypesRequest(), None)
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED


def _new_type(**overrides: Any) -> license_pb2.LicenseType:
    values: dict[str, Any] = {
        "type_code": "11100000000013338W011",
        "name": "食品经营许可证",
        "name_en": "Food business licence",
        "defining_authority": license_pb2.Department(name="国家市场监督管理总局"),
        "issuing_departments": [license_pb2.Department(code=ISSUER)],
        "holder_code_types": [license_pb2.HOLDER_CODE_TYPE_USCC],
        "fields": [
            license_pb2.FieldDefinition(
                name="KZ_JYZMC", label="经营者名称", value_type=license_pb2.FIELD_TYPE_STRING,
                required=True, max_length=200, public=True,
            )
        ],
        "validity": license_pb2.ValidityRule(default_days=5 * 365, max_days=5 * 365),
        "layout_json": '{"page": "A4-portrait"}',
    }  # fmt: skip
    values.update(overrides)
    return license_pb2.LicenseType(**values)


def test_define_type(world: Handle) -> None:
    request = license_pb2.DefineLicenseTypeRequest(license_type=_new_type())
    defined = world.call("DefineLicenseType", request, ADMIN).license_type
    assert defined.validity.default_days == 5 * 365 and not defined.validity.long_term_allowed
    got = world.call(
        "GetLicenseType", license_pb2.GetLicenseTypeRequest(type_code=defined.type_code)
    ).license_type
    assert got == defined
    assert defined.revision == 1 and defined.HasField("created_at")
    # redefining replaces: a new revision; the old one stays readable
    renamed = _new_type(name="食品经营许可证(新)")
    again = world.call(
        "DefineLicenseType", license_pb2.DefineLicenseTypeRequest(license_type=renamed), ADMIN
    )
    assert again.license_type.name == "食品经营许可证(新)"
    assert again.license_type.revision == 2
    first = world.call(
        "GetLicenseType",
        license_pb2.GetLicenseTypeRequest(type_code=defined.type_code, revision=1),
    ).license_type
    assert first == defined
    current = world.call(
        "GetLicenseType",
        license_pb2.GetLicenseTypeRequest(type_code=defined.type_code, revision=2),
    ).license_type
    assert current == again.license_type
    same = world.call(
        "DefineLicenseType", license_pb2.DefineLicenseTypeRequest(license_type=renamed), ADMIN
    )
    assert same.license_type == again.license_type  # unchanged: no new revision
    for revision, code in ((3, grpc.StatusCode.NOT_FOUND), (-1, grpc.StatusCode.INVALID_ARGUMENT)):
        missing = world.fails(
            "GetLicenseType",
            license_pb2.GetLicenseTypeRequest(type_code=defined.type_code, revision=revision),
        )
        assert missing.code() == code

    denied = world.fails("DefineLicenseType", request, DEPT)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    bad = world.fails(
        "DefineLicenseType",
        license_pb2.DefineLicenseTypeRequest(
            license_type=_new_type(
                type_code="11100000000013338X011",
                issuing_departments=[license_pb2.Department(code="nope")],
                validity=license_pb2.ValidityRule(default_days=-100),
            )
        ),
        ADMIN,
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "license_type.validity.default_days" in violations(bad)
    bad2 = world.fails(
        "DefineLicenseType",
        license_pb2.DefineLicenseTypeRequest(
            license_type=_new_type(issuing_departments=[license_pb2.Department(code="nope")])
        ),
        ADMIN,
    )
    assert bad2.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "issuing_departments[0]" in " ".join(violations(bad2))


# --- licences -----------------------------------------------------------------------------------


def test_issue_get_and_verify(world: Handle) -> None:
    licence = _issue(world, license_number="闽市监(2015)第1号")
    assert licence.identifier.startswith(f"1.2.156.3005.2.{catalogue.BUSINESS_LICENCE_CODE}.")
    assert licence.version == 1 and licence.status == common_pb2.LICENSE_STATUS_VALID
    assert licence.metadata.zzbh == "闽市监(2015)第1号"
    assert licence.metadata.czzt == "福州示例科技有限公司"
    assert licence.metadata.zzbfjgdm == ISSUER and licence.metadata.zzbfjg
    assert licence.metadata.kz["KZ_MC"] == "福州示例科技有限公司"
    assert licence.holder.kind == common_pb2.IDENTITY_KIND_LEGAL_PERSON
    assert not licence.HasField("document_digest")  # the PDF is not built yet
    assert licence.signed_data.count(".") == 2 and licence.qr_payload

    got = world.call("GetLicense", license_pb2.GetLicenseRequest(identifier=licence.identifier))
    assert got.license == licence

    lists = _status_lists(world)
    assert check_signed_data(licence.signed_data, world.roots, lists).verdict is Verdict.VALID
    assert check_qr(licence.qr_payload, world.trust, lists).verdict is Verdict.VALID


def test_issue_errors(world: Handle) -> None:
    bad_field = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(
            type_code=catalogue.BUSINESS_LICENCE_CODE,
            issuer_code=ISSUER,
            holder=license_pb2.LicenseHolder(
                code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY
            ),
            fields={**GOOD_BL, "KZ_CLRQ": "yesterday"},
        ),
    )
    assert bad_field.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fields.KZ_CLRQ" in violations(bad_field)
    bad_date = world.fails("IssueLicense", license_pb2.IssueLicenseRequest(valid_from="2015/06/01"))
    assert "valid_from" in violations(bad_date)
    no_holder_type = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(type_code=catalogue.BUSINESS_LICENCE_CODE),
    )
    assert "holder.code_type" in violations(no_holder_type)
    other = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(
            type_code=catalogue.BUSINESS_LICENCE_CODE,
            holder=license_pb2.LicenseHolder(
                code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY
            ),
            fields=GOOD_BL,
        ),
        OTHER_DEPT,
    )
    assert other.code() == grpc.StatusCode.PERMISSION_DENIED
    unknown_holder = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(
            type_code=catalogue.BUSINESS_LICENCE_CODE,
            holder=license_pb2.LicenseHolder(
                code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code="11100000000013338W"
            ),
            fields=GOOD_BL,
        ),
    )
    assert unknown_holder.code() == grpc.StatusCode.NOT_FOUND
    denied = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(type_code=catalogue.BUSINESS_LICENCE_CODE),
        NOBODY,
    )
    assert denied.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


def test_get_license_errors(world: Handle) -> None:
    licence = _issue(world)
    bad = world.fails("GetLicense", license_pb2.GetLicenseRequest(identifier="1.2.156.3005.2.x"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert any(f.startswith("identifier") for f in violations(bad))
    tampered = licence.identifier[:-1] + ("0" if licence.identifier[-1] != "0" else "1")
    wrong_check = world.fails("GetLicense", license_pb2.GetLicenseRequest(identifier=tampered))
    assert wrong_check.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "identifier.check" in violations(wrong_check)
    serial = licence.serial
    other_serial = ("1" if serial[-1] != "1" else "2").join([serial[:-1], ""])
    from license.identifiers import build_identifier

    unknown = str(build_identifier(catalogue.BUSINESS_LICENCE_CODE, ISSUER, other_serial, 1))
    missing = world.fails("GetLicense", license_pb2.GetLicenseRequest(identifier=unknown))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    stranger = world.fails(
        "GetLicense", license_pb2.GetLicenseRequest(identifier=licence.identifier), OTHER_DEPT
    )
    assert stranger.code() == grpc.StatusCode.PERMISSION_DENIED


def test_status_changes(world: Handle) -> None:
    licence = _issue(world)
    ident = licence.identifier

    def change(method: str, reason: str = "检查", who: Principal = DEPT) -> Any:
        request_type: Callable[..., Any] = getattr(license_pb2, f"{method}Request")
        return world.call(method, request_type(identifier=ident, reason=reason), who).license

    suspended = change("SuspendLicense", "暂扣")
    assert suspended.status == common_pb2.LICENSE_STATUS_SUSPENDED
    assert suspended.status_reason == "暂扣"
    lists = _status_lists(world)
    assert check_qr(licence.qr_payload, world.trust, lists).verdict is Verdict.INVALID

    again = world.fails(
        "SuspendLicense", license_pb2.SuspendLicenseRequest(identifier=ident, reason="x")
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    resumed = change("ResumeLicense", "恢复")
    assert resumed.status == common_pb2.LICENSE_STATUS_VALID

    no_reason = world.fails(
        "RevokeLicense", license_pb2.RevokeLicenseRequest(identifier=ident, reason=" ")
    )
    assert no_reason.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in violations(no_reason)
    denied = world.fails(
        "RevokeLicense",
        license_pb2.RevokeLicenseRequest(identifier=ident, reason="注销"),
        OTHER_DEPT,
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    bad_ident = world.fails(
        "RevokeLicense", license_pb2.RevokeLicenseRequest(identifier="nope", reason="注销")
    )
    assert bad_ident.code() == grpc.StatusCode.INVALID_ARGUMENT

    revoked = change("RevokeLicense", "注销")
    assert revoked.status == common_pb2.LICENSE_STATUS_REVOKED
    result = check_signed_data(licence.signed_data, world.roots, _status_lists(world))
    assert result.verdict is Verdict.INVALID and "REVOKED" in result.reasons
    resume = world.fails(
        "ResumeLicense", license_pb2.ResumeLicenseRequest(identifier=ident, reason="x")
    )
    assert resume.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_status_list(world: Handle) -> None:
    _issue(world)
    response = world.call(
        "GetStatusList", license_pb2.GetStatusListRequest(issuer_code=ISSUER), NOBODY
    )
    assert response.bits == 2 and response.uri.endswith(ISSUER)
    assert response.expires_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    verified = verify_status_list(response.status_list_token, world.roots)
    assert verified.issuer_code == ISSUER


def test_status_list_errors(world: Handle) -> None:
    bad = world.fails("GetStatusList", license_pb2.GetStatusListRequest(issuer_code="123"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "issuer_code" in violations(bad)


def _verify(world: Handle, who: Principal = NOBODY, **evidence: Any) -> Any:
    request = license_pb2.LicenseServiceVerifyLicenseRequest(
        evidence=license_pb2.LicenseEvidence(**evidence),
        report_options=common_pb2.ReportOptions(reference="case-1"),
    )
    return world.call("VerifyLicense", request, who).report


def test_verify_license(world: Handle) -> None:
    licence = _issue(world)
    assert licence.verification_url.endswith(f"/verify/license/{licence.identifier}")
    assert not licence.HasField("document_digest")  # this service makes no documents
    for form in ("signed_data", "qr_payload", "identifier"):
        report = _verify(world, **{form: getattr(licence, form)})
        assert report.verdict == common_pb2.VERDICT_VALID, (form, report)
        assert report.license.identifier == licence.identifier
        assert report.license.status == common_pb2.LICENSE_STATUS_VALID
        assert report.license.holder_name == "福州示例科技有限公司"
        assert report.reference == "case-1" and report.evidence_digest.value

    # a tampered payload
    header, payload, signature = licence.signed_data.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["CZZT"] = "别的公司"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    tampered = _verify(world, signed_data=f"{header}.{forged}.{signature}")
    assert tampered.verdict == common_pb2.VERDICT_INVALID
    assert tampered.reasons[0].code == common_pb2.REASON_CODE_SIGNATURE_INVALID

    # the same licence signed by a key certified under an unknown root
    from license.qr import encode_payload
    from license.signed_data import LicenceMetadata, sign_licence
    from tests.license.conftest import make_ca

    assert world.store is not None
    rogue = make_signer(world.store, make_ca("rogue root"), uscc=ISSUER)
    claims_ok = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    meta = LicenceMetadata.from_json(claims_ok)
    unknown = _verify(world, signed_data=sign_licence(rogue, meta))
    assert unknown.verdict == common_pb2.VERDICT_INVALID
    assert unknown.reasons[0].code == common_pb2.REASON_CODE_CHAIN_INVALID, unknown
    unknown_qr = _verify(world, qr_payload=encode_payload(rogue, meta))
    assert unknown_qr.verdict == common_pb2.VERDICT_INVALID
    assert unknown_qr.reasons[0].code == common_pb2.REASON_CODE_UNKNOWN_ISSUER, unknown_qr

    # garbage
    garbage = _verify(world, qr_payload="NOT-A-PAYLOAD")
    assert garbage.verdict == common_pb2.VERDICT_INVALID
    assert garbage.reasons[0].code == common_pb2.REASON_CODE_FORMAT_ERROR

    # revoked: both paths say so
    world.call(
        "RevokeLicense",
        license_pb2.RevokeLicenseRequest(identifier=licence.identifier, reason="注销"),
    )
    for form in ("signed_data", "qr_payload"):
        report = _verify(world, **{form: getattr(licence, form)})
        assert report.verdict == common_pb2.VERDICT_INVALID
        assert report.license.status == common_pb2.LICENSE_STATUS_REVOKED
        assert [r.code for r in report.reasons] == [common_pb2.REASON_CODE_LICENSE_REVOKED]

    # expired (judged at a time after the end of validity)
    expiring = _issue(
        world, type_code=catalogue.USCC_CERTIFICATE_CODE, valid_from="2020-01-01",
        fields={"KZ_TYSHXYDM": COMPANY, "KZ_JGMC": "某机关", "KZ_JGLX": "机关",
                "KZ_FZR": "张三", "KZ_JGDZ": "某地", "KZ_BFJG": "某委"},
    )  # fmt: skip
    report = _verify(world, signed_data=expiring.signed_data)
    assert report.verdict == common_pb2.VERDICT_INVALID
    assert report.license.status == common_pb2.LICENSE_STATUS_EXPIRED


def test_verify_license_errors(world: Handle) -> None:
    empty = world.fails("VerifyLicense", license_pb2.LicenseServiceVerifyLicenseRequest(), NOBODY)
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "evidence" in violations(empty)
    by_id = world.fails(
        "VerifyLicense",
        license_pb2.LicenseServiceVerifyLicenseRequest(
            evidence=license_pb2.LicenseEvidence(identifier="x")
        ),
        NOBODY,
    )
    assert by_id.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "identifier.prefix" in violations(by_id)
    junk_pdf = _verify(world, document=b"%PDF-1.7 not a licence")
    assert junk_pdf.verdict == common_pb2.VERDICT_INVALID
    assert junk_pdf.evidence_kind == common_pb2.EVIDENCE_KIND_LICENSE_DOCUMENT
    anonymous = world.fails(
        "VerifyLicense",
        license_pb2.LicenseServiceVerifyLicenseRequest(
            evidence=license_pb2.LicenseEvidence(qr_payload="x")
        ),
        None,
    )
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED


def test_define_enum_boolean_and_english_labels(world: Handle) -> None:
    fields = [
        license_pb2.FieldDefinition(
            name="KZ_JYZMC", label="经营者名称", label_en="Operator",
            value_type=license_pb2.FIELD_TYPE_STRING, required=True, max_length=200,
        ),
        license_pb2.FieldDefinition(
            name="KZ_LB", label="类别", label_en="Category",
            value_type=license_pb2.FIELD_TYPE_ENUM, required=True, max_length=20,
            allowed_values=["食品销售", "餐饮服务"], public=True,
        ),
        license_pb2.FieldDefinition(
            name="KZ_WL", label="网络经营", label_en="Online",
            value_type=license_pb2.FIELD_TYPE_BOOLEAN, max_length=5,
        ),
    ]  # fmt: skip
    request = license_pb2.DefineLicenseTypeRequest(license_type=_new_type(fields=fields))
    defined = world.call("DefineLicenseType", request, ADMIN).license_type
    got = world.call(
        "GetLicenseType", license_pb2.GetLicenseTypeRequest(type_code=defined.type_code)
    ).license_type
    assert got == defined
    assert [f.label_en for f in got.fields] == ["Operator", "Category", "Online"]
    assert [f.value_type for f in got.fields] == [
        license_pb2.FIELD_TYPE_STRING,
        license_pb2.FIELD_TYPE_ENUM,
        license_pb2.FIELD_TYPE_BOOLEAN,
    ]
    assert list(got.fields[1].allowed_values) == ["食品销售", "餐饮服务"]

    holder = license_pb2.LicenseHolder(code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY)
    good = {"KZ_JYZMC": "福州示例科技有限公司", "KZ_LB": "餐饮服务", "KZ_WL": "true"}
    licence = _issue(world, type_code=defined.type_code, holder=holder, fields=good)
    assert dict(licence.metadata.kz) == good
    bad = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(
            type_code=defined.type_code, issuer_code=ISSUER, holder=holder,
            fields={**good, "KZ_LB": "药品销售", "KZ_WL": "yes"},
        ),
    )  # fmt: skip
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(bad) == {
        "fields.KZ_LB": "must be one of 食品销售, 餐饮服务",
        "fields.KZ_WL": "must be true or false",
    }
    no_values = world.fails(
        "DefineLicenseType",
        license_pb2.DefineLicenseTypeRequest(
            license_type=_new_type(
                type_code="11100000000013338W012",
                fields=[license_pb2.FieldDefinition(
                    name="KZ_LB", label="类别", value_type=license_pb2.FIELD_TYPE_ENUM
                )],
            )
        ),
        ADMIN,
    )  # fmt: skip
    assert no_values.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fields[0].allowed_values" in violations(no_values)
    missing = world.fails(
        "GetLicenseType", license_pb2.GetLicenseTypeRequest(type_code="11100000000013338W012")
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND  # nothing was stored


def test_validity_in_days_and_licences_keep_their_type_revision(world: Handle) -> None:
    rule = license_pb2.ValidityRule(default_days=90, max_days=180)
    request = license_pb2.DefineLicenseTypeRequest(license_type=_new_type(validity=rule))
    defined = world.call("DefineLicenseType", request, ADMIN).license_type
    assert (defined.validity.default_days, defined.validity.max_days) == (90, 180)
    holder = license_pb2.LicenseHolder(code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY)
    fields = {"KZ_JYZMC": "福州示例科技有限公司"}
    licence = _issue(
        world, type_code=defined.type_code, holder=holder, fields=fields, valid_from="2026-01-01"
    )
    assert licence.metadata.zzyxqjzrq == "2026-04-01"  # 90 days
    assert licence.type_revision == 1
    too_long = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(
            type_code=defined.type_code, issuer_code=ISSUER, holder=holder, fields=fields,
            valid_from="2026-01-01", valid_until="2026-07-01",
        ),
    )  # fmt: skip
    assert too_long.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(too_long) == {"valid_until": "must be within 180 days of valid_from"}
    inverted = world.fails(
        "DefineLicenseType",
        license_pb2.DefineLicenseTypeRequest(
            license_type=_new_type(
                validity=license_pb2.ValidityRule(default_days=200, max_days=100)
            )
        ),
        ADMIN,
    )
    assert inverted.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "validity.default_days" in violations(inverted)

    # a new revision (two years by default): the issued licence keeps revision 1
    revised = _new_type(validity=license_pb2.ValidityRule(default_days=730))
    again = world.call(
        "DefineLicenseType", license_pb2.DefineLicenseTypeRequest(license_type=revised), ADMIN
    ).license_type
    assert again.revision == 2 and again.validity.default_days == 730
    got = world.call("GetLicense", license_pb2.GetLicenseRequest(identifier=licence.identifier))
    assert got.license.type_revision == 1
    newer = _issue(
        world, type_code=defined.type_code, holder=holder, fields=fields, valid_from="2024-02-29"
    )
    assert newer.type_revision == 2 and newer.metadata.zzyxqjzrq == "2026-02-28"  # 2 years


def test_field_types_round_trip(world: Handle) -> None:
    """A type read with GetLicenseType defines the same type again: USCC and resident-ID
    fields keep their types (and checks)."""
    business = world.call(
        "GetLicenseType",
        license_pb2.GetLicenseTypeRequest(type_code=catalogue.BUSINESS_LICENCE_CODE),
    ).license_type
    by_name = {f.name: f.value_type for f in business.fields}
    assert by_name["KZ_TYSHXYDM"] == license_pb2.FIELD_TYPE_USCC
    assert by_name["KZ_CLRQ"] == license_pb2.FIELD_TYPE_DATE
    copy = license_pb2.LicenseType()
    copy.CopyFrom(business)
    copy.type_code = catalogue.SAMR_CODE + "002"
    copy.fields.append(
        license_pb2.FieldDefinition(
            name="KZ_SFZH", label="身份证号", value_type=license_pb2.FIELD_TYPE_RESIDENT_ID,
            required=False, max_length=18,
        )
    )  # fmt: skip
    defined = world.call(
        "DefineLicenseType", license_pb2.DefineLicenseTypeRequest(license_type=copy), ADMIN
    ).license_type
    assert [(f.name, f.value_type) for f in defined.fields] == [
        (f.name, f.value_type) for f in copy.fields
    ]
    holder = license_pb2.LicenseHolder(code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY)
    bad = world.fails(
        "IssueLicense",
        license_pb2.IssueLicenseRequest(
            type_code=defined.type_code, issuer_code=ISSUER, holder=holder,
            fields={**GOOD_BL, "KZ_TYSHXYDM": "91350100M000100Y44",
                    "KZ_SFZH": "110105194912310021"},
        ),
    )  # fmt: skip
    assert set(violations(bad)) == {"fields.KZ_TYSHXYDM", "fields.KZ_SFZH"}
    unknown = _new_type(
        type_code=catalogue.SAMR_CODE + "003",
        fields=[license_pb2.FieldDefinition(name="KZ_X", label="x", value_type=99)],  # type: ignore[arg-type]
    )
    refused = world.fails(
        "DefineLicenseType", license_pb2.DefineLicenseTypeRequest(license_type=unknown), ADMIN
    )
    assert violations(refused) == {"license_type.fields[0].value_type": "not a known field type"}


def test_verify_license_with_a_malformed_issuer_name_is_a_format_error(world: Handle) -> None:
    """An embedded certificate whose issuer name cannot be parsed was INTERNAL (ValueError out
    of the chain check); it is a FORMAT_ERROR verdict now."""
    from tests.license.conftest import with_malformed_issuer

    licence = _issue(world)
    report = _verify(world, signed_data=with_malformed_issuer(licence.signed_data))
    assert report.verdict == common_pb2.VERDICT_INVALID
    assert report.reasons[0].code == common_pb2.REASON_CODE_FORMAT_ERROR, report


def test_verify_license_judges_the_last_day_by_beijing_time(world: Handle) -> None:
    """A licence is valid through 23:59:59 Beijing time of its last day: at 16:00 UTC that
    day (midnight in Beijing) it has expired, though the UTC date is still the last day."""
    from datetime import timedelta

    from google.protobuf.timestamp_pb2 import Timestamp

    from license.days import LICENCE_ZONE, licence_day

    last = licence_day() + timedelta(days=2)
    licence = _issue(world, valid_from="", valid_until=last.isoformat())
    following = last + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=LICENCE_ZONE)
    end = end.astimezone(UTC)
    assert end.date() == last  # the UTC date is still the last day

    def status_at(moment: datetime) -> tuple[int, int]:
        at = Timestamp()
        at.FromDatetime(moment)
        request = license_pb2.LicenseServiceVerifyLicenseRequest(
            evidence=license_pb2.LicenseEvidence(signed_data=licence.signed_data), at_time=at
        )
        report = world.call("VerifyLicense", request, NOBODY).report
        return report.verdict, report.license.status

    assert status_at(end - timedelta(seconds=1)) == (
        common_pb2.VERDICT_VALID,
        common_pb2.LICENSE_STATUS_VALID,
    )
    assert status_at(end) == (common_pb2.VERDICT_INVALID, common_pb2.LICENSE_STATUS_EXPIRED)
