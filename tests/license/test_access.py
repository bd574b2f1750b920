"""ListLicenses, AnnotateLicense, access grants and GetLicenseDocument over the production
servicer (both backends): who may do what, every access audited, refusals change nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from govtrust.audit import AuditRecord, verify_chain
from govtrust.principal import Principal
from govtrust.v1 import common_pb2, license_pb2
from hsm.audit_key import AuditChainKey
from license.identifiers import parse_identifier
from license.models import LicenceAccessGrantRow
from tests.license.conftest import COMPANY, ISSUER
from tests.license.test_production import DEPT, Prod, prod  # noqa: F401
from tests.unchanged import unchanged

OTHER_DEPT = Principal("service", "other", frozenset({"licence-issuer:91350100M000100Y43"}))


def _refused(p: Prod, method: str, request: Any, who: Principal | None, code: Any) -> str:
    with unchanged(p.platform.db):
        error: Any = p.fails(method, request, who)
        assert error.code() == code, (method, error.details())
    return str(error.details())


def _actions(p: Prod) -> list[tuple[str, str, dict[str, Any]]]:
    with p.platform.db.read() as session:
        return [
            (r.action, r.target, json.loads(r.details))
            for r in session.scalars(select(AuditRecord).order_by(AuditRecord.seq))
        ]


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _holder_ref(**kwargs: Any) -> common_pb2.IdentityRef:
    return common_pb2.IdentityRef(**kwargs)


# --- ListLicenses ---------------------------------------------------------------------------


def test_list_licenses_by_holder_agent_and_issuer(prod: Prod) -> None:  # noqa: F811
    permit = prod.issue_permit(skip_document=True)
    first = prod.issue(skip_document=True)
    second = prod.issue(skip_document=True)

    mine: Any = prod.call(
        "ListLicenses",
        license_pb2.ListLicensesRequest(holder=_holder_ref(id=prod.holder_id)),
        prod.holder,
    )
    assert [x.identifier for x in mine.licenses] == [permit.identifier]
    assert mine.licenses[0].signed_data == permit.signed_data

    by_uscc = license_pb2.ListLicensesRequest(holder=_holder_ref(uscc=COMPANY))
    for who in (prod.rep, prod.agent):
        company: Any = prod.call("ListLicenses", by_uscc, who)
        assert {x.identifier for x in company.licenses} == {first.identifier, second.identifier}

    page: Any = prod.call(
        "ListLicenses", license_pb2.ListLicensesRequest(issuer_code=ISSUER, page_size=2), DEPT
    )
    assert len(page.licenses) == 2 and page.next_page_token
    rest: Any = prod.call(
        "ListLicenses",
        license_pb2.ListLicensesRequest(
            issuer_code=ISSUER, page_size=2, page_token=page.next_page_token
        ),
        DEPT,
    )
    assert len(rest.licenses) == 1 and not rest.next_page_token
    listed = {x.identifier for x in [*page.licenses, *rest.licenses]}
    assert listed == {permit.identifier, first.identifier, second.identifier}
    only_permits: Any = prod.call(
        "ListLicenses",
        license_pb2.ListLicensesRequest(issuer_code=ISSUER, type_code=permit.metadata.zzlxdm),
        DEPT,
    )
    assert [x.identifier for x in only_permits.licenses] == [permit.identifier]

    prod.call(
        "RevokeLicense",
        license_pb2.RevokeLicenseRequest(identifier=first.identifier, reason="注销"),
    )
    revoked: Any = prod.call(
        "ListLicenses",
        license_pb2.ListLicensesRequest(
            holder=_holder_ref(uscc=COMPANY), status=common_pb2.LICENSE_STATUS_REVOKED
        ),
        prod.rep,
    )
    assert [x.identifier for x in revoked.licenses] == [first.identifier]
    lists = [a for a in _actions(prod) if a[0] == "licence.list"]
    assert len(lists) == 7 and lists[0][1] == f"holder/{prod.holder_id}"


def test_list_licenses_refusals(prod: Prod) -> None:  # noqa: F811
    prod.issue_permit(skip_document=True)
    prod.issue(skip_document=True)
    denied = grpc.StatusCode.PERMISSION_DENIED
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    own = license_pb2.ListLicensesRequest(holder=_holder_ref(id=prod.holder_id))
    _refused(prod, "ListLicenses", own, prod.stranger, denied)
    _refused(prod, "ListLicenses", own, DEPT, denied)  # the issuer lists by issuer_code
    company = license_pb2.ListLicensesRequest(holder=_holder_ref(uscc=COMPANY))
    _refused(prod, "ListLicenses", company, prod.seal_agent, denied)  # seal.use only
    _refused(prod, "ListLicenses", company, prod.holder, denied)
    _refused(
        prod, "ListLicenses", license_pb2.ListLicensesRequest(issuer_code=ISSUER), OTHER_DEPT,
        denied,
    )  # fmt: skip
    _refused(prod, "ListLicenses", license_pb2.ListLicensesRequest(), prod.holder, invalid)
    both = license_pb2.ListLicensesRequest(
        holder=_holder_ref(id=prod.holder_id), issuer_code=ISSUER
    )
    _refused(prod, "ListLicenses", both, DEPT, invalid)
    bad_token = license_pb2.ListLicensesRequest(issuer_code=ISSUER, page_token="x")
    _refused(prod, "ListLicenses", bad_token, DEPT, invalid)
    unknown = license_pb2.ListLicensesRequest(holder=_holder_ref(uscc="91350100M000100Y44"))
    assert _refused(prod, "ListLicenses", unknown, prod.rep, invalid)
    _refused(prod, "ListLicenses", own, None, grpc.StatusCode.UNAUTHENTICATED)


# --- AnnotateLicense ------------------------------------------------------------------------


def test_annotate_makes_a_new_sealed_version(prod: Prod) -> None:  # noqa: F811
    v1 = prod.issue()
    response: Any = prod.call(
        "AnnotateLicense",
        license_pb2.AnnotateLicenseRequest(
            identifier=v1.identifier,
            text="注册资本变更",
            fields={"KZ_ZCZB": "200万元人民币"},
            holder_name="福州示例科技集团有限公司",
        ),
    )
    v2, previous = response.license, response.previous
    assert v2.identifier == v1.identifier[: -len("001.X")] + v2.identifier[-5:]
    assert v2.version == 2 and v2.previous_identifier == v1.identifier
    assert v2.metadata.kz["KZ_ZCZB"] == "200万元人民币"
    assert v2.metadata.czzt == "福州示例科技集团有限公司"
    assert v2.document_digest.value and v2.document_digest.value != v1.document_digest.value
    assert previous.status == common_pb2.LICENSE_STATUS_SUPERSEDED
    assert previous.next_identifier == v2.identifier
    record = [a for a in _actions(prod) if a[0] == "licence.new_version"][-1]
    assert record[2]["changed_fields"] == ["KZ_ZCZB"] and record[2]["reason"] == "注册资本变更"
    events, _ = prod.runtime.seals.service.history(prod.seal.id, include_uses=True)
    assert len([e for e in events if e.action == "seal_pdf"]) == 2

    bare: Any = prod.call(
        "AnnotateLicense",
        license_pb2.AnnotateLicenseRequest(
            identifier=v2.identifier, text="经营范围变更", fields={"KZ_JYFW": "软件开发。"},
            skip_document=True,
        ),
    )  # fmt: skip
    assert bare.license.version == 3 and not bare.license.HasField("document_digest")


def test_annotate_refusals(prod: Prod) -> None:  # noqa: F811
    v1 = prod.issue(skip_document=True)
    request = license_pb2.AnnotateLicenseRequest(
        identifier=v1.identifier, text="变更", fields={"KZ_ZCZB": "300万元"}
    )
    denied = grpc.StatusCode.PERMISSION_DENIED
    _refused(prod, "AnnotateLicense", request, OTHER_DEPT, denied)
    _refused(prod, "AnnotateLicense", request, prod.rep, denied)
    bad_field = license_pb2.AnnotateLicenseRequest(
        identifier=v1.identifier, text="变更", fields={"KZ_ZCZB": "很多钱"}
    )
    _refused(prod, "AnnotateLicense", bad_field, DEPT, grpc.StatusCode.INVALID_ARGUMENT)
    no_text = license_pb2.AnnotateLicenseRequest(identifier=v1.identifier)
    _refused(prod, "AnnotateLicense", no_text, DEPT, grpc.StatusCode.INVALID_ARGUMENT)
    wrong_check = "1" if v1.identifier.endswith("0") else "0"  # never the real check digit
    for bad in ("", "1.2.156.3005.2.nope", v1.identifier[:-1] + wrong_check):
        odd = license_pb2.AnnotateLicenseRequest(identifier=bad, text="变更")
        _refused(prod, "AnnotateLicense", odd, DEPT, grpc.StatusCode.INVALID_ARGUMENT)
    prod.call(
        "RevokeLicense", license_pb2.RevokeLicenseRequest(identifier=v1.identifier, reason="注销")
    )
    details = _refused(prod, "AnnotateLicense", request, DEPT, grpc.StatusCode.FAILED_PRECONDITION)
    assert "revoked" in details


# --- access grants --------------------------------------------------------------------------


def _grant(p: Prod, identifier: str, who: Principal, **overrides: Any) -> Any:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "identifier": identifier,
        "grantee_name": "某某银行",
        "purpose": "开户",
        "valid_until": _stamp(now + timedelta(days=7)),
    }
    values.update(overrides)
    return p.call("GrantLicenseAccess", license_pb2.GrantLicenseAccessRequest(**values), who)


def test_grant_fetch_and_revoke(prod: Prod) -> None:  # noqa: F811
    permit = prod.issue_permit()
    granted = _grant(prod, permit.identifier, prod.holder)
    code = granted.access_code
    assert code.startswith("LA1-") and len(code) > 40
    assert granted.grant.status == common_pb2.GRANT_STATUS_ACTIVE
    assert granted.grant.grantee_name == "某某银行" and granted.grant.access_count == 0

    # the third party (any authenticated caller) reads with the code
    got: Any = prod.call(
        "GetLicense",
        license_pb2.GetLicenseRequest(identifier=permit.identifier, access_code=code),
        prod.stranger,
    )
    assert got.license.identifier == permit.identifier
    doc: Any = prod.call(
        "GetLicenseDocument",
        license_pb2.GetLicenseDocumentRequest(identifier=permit.identifier, access_code=code),
        prod.stranger,
    )
    assert doc.digest.value == permit.document_digest.value
    with prod.platform.db.read() as session:
        row = session.get(LicenceAccessGrantRow, granted.grant.id)
        assert row is not None and row.access_count == 2 and row.code_hash != code.encode()

    # audited with hashes, never the code
    reads = [a for a in _actions(prod) if a[0].startswith("licence.read")]
    assert [a[2]["role"] for a in reads] == ["grantee", "grantee"]
    assert all(a[2]["grant"] == granted.grant.id and a[2]["code_sha256"] for a in reads)
    assert all(code not in str(a) for a in _actions(prod))
    with prod.platform.db.read() as session:
        assert verify_chain(session, AuditChainKey(prod.platform.master_key)).ok

    # revoke: the code stops working; revoking again is refused
    revoked: Any = prod.call(
        "RevokeLicenseAccess",
        license_pb2.RevokeLicenseAccessRequest(grant_id=granted.grant.id, reason="已开户"),
        prod.holder,
    )
    assert revoked.grant.status == common_pb2.GRANT_STATUS_REVOKED
    denied = grpc.StatusCode.PERMISSION_DENIED
    with_code = license_pb2.GetLicenseRequest(identifier=permit.identifier, access_code=code)
    assert "revoked" in _refused(prod, "GetLicense", with_code, prod.stranger, denied)
    doc_code = license_pb2.GetLicenseDocumentRequest(identifier=permit.identifier, access_code=code)
    _refused(prod, "GetLicenseDocument", doc_code, prod.stranger, denied)
    again = license_pb2.RevokeLicenseAccessRequest(grant_id=granted.grant.id, reason="x")
    _refused(prod, "RevokeLicenseAccess", again, prod.holder, grpc.StatusCode.FAILED_PRECONDITION)


def test_expired_grant_wrong_licence_and_registered_grantee(prod: Prod) -> None:  # noqa: F811
    permit = prod.issue_permit(skip_document=True)
    company = prod.issue(skip_document=True)
    granted = _grant(prod, permit.identifier, prod.holder)
    denied = grpc.StatusCode.PERMISSION_DENIED
    # a code for one licence opens no other
    other = license_pb2.GetLicenseRequest(
        identifier=company.identifier, access_code=granted.access_code
    )
    _refused(prod, "GetLicense", other, prod.stranger, denied)
    forged = license_pb2.GetLicenseRequest(identifier=permit.identifier, access_code="LA1-guess")
    _refused(prod, "GetLicense", forged, prod.stranger, denied)
    # an expired grant
    with prod.platform.db.transaction() as session:
        row = session.get(LicenceAccessGrantRow, granted.grant.id)
        assert row is not None
        row.valid_from = datetime.now(UTC) - timedelta(days=3)
        row.valid_until = datetime.now(UTC) - timedelta(days=1)
    expired = license_pb2.GetLicenseRequest(
        identifier=permit.identifier, access_code=granted.access_code
    )
    assert "expired" in _refused(prod, "GetLicense", expired, prod.stranger, denied)
    # a registered grantee reads with its own credentials, nobody else without a code
    plain = license_pb2.GetLicenseRequest(identifier=permit.identifier)
    _refused(prod, "GetLicense", plain, prod.stranger, denied)
    _grant(prod, permit.identifier, prod.holder, grantee=_holder_ref(id=prod.stranger_id))
    got: Any = prod.call("GetLicense", plain, prod.stranger)
    assert got.license.identifier == permit.identifier
    assert [a for a in _actions(prod) if a[0] == "licence.read.licence"][-1][2]["role"] == "grantee"
    # the company's agent (licence.apply) grants for the company's licence; others may not
    by_agent = _grant(prod, company.identifier, prod.agent)
    assert by_agent.grant.identifier == company.identifier


def test_grant_refusals(prod: Prod) -> None:  # noqa: F811
    permit = prod.issue_permit(skip_document=True)
    now = datetime.now(UTC)
    denied = grpc.StatusCode.PERMISSION_DENIED
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    def request(**overrides: Any) -> license_pb2.GrantLicenseAccessRequest:
        values: dict[str, Any] = {
            "identifier": permit.identifier,
            "grantee_name": "某某银行",
            "purpose": "开户",
            "valid_until": _stamp(now + timedelta(days=7)),
        }
        values.update(overrides)
        return license_pb2.GrantLicenseAccessRequest(**values)

    for who in (prod.stranger, DEPT, prod.rep):  # not the holder (the issuer neither)
        _refused(prod, "GrantLicenseAccess", request(), who, denied)
    _refused(prod, "GrantLicenseAccess", request(purpose=""), prod.holder, invalid)
    _refused(prod, "GrantLicenseAccess", request(grantee_name=""), prod.holder, invalid)
    past = _stamp(now - timedelta(days=1))
    _refused(prod, "GrantLicenseAccess", request(valid_until=past), prod.holder, invalid)
    too_long = _stamp(now + timedelta(days=400))
    _refused(prod, "GrantLicenseAccess", request(valid_until=too_long), prod.holder, invalid)
    no_end = license_pb2.GrantLicenseAccessRequest(
        identifier=permit.identifier, grantee_name="x", purpose="y"
    )
    _refused(prod, "GrantLicenseAccess", no_end, prod.holder, invalid)
    _refused(prod, "GrantLicenseAccess", request(identifier="1.2.3"), prod.holder, invalid)
    granted = _grant(prod, permit.identifier, prod.holder)
    revoke = license_pb2.RevokeLicenseAccessRequest(grant_id=granted.grant.id, reason="x")
    foreign = _refused(prod, "RevokeLicenseAccess", revoke, prod.stranger, denied)
    # an unknown grant id is refused like a foreign one: the answer tells nothing (#13 item 7)
    missing = license_pb2.RevokeLicenseAccessRequest(grant_id="nope", reason="x")
    unknown = _refused(prod, "RevokeLicenseAccess", missing, prod.stranger, denied)
    assert unknown.replace("nope", "<id>") == foreign.replace(granted.grant.id, "<id>")
    assert permit.identifier not in foreign
    _refused(prod, "RevokeLicenseAccess", missing, prod.holder, denied)
    prod.call(
        "RevokeLicense",
        license_pb2.RevokeLicenseRequest(identifier=permit.identifier, reason="注销"),
    )
    _refused(
        prod, "GrantLicenseAccess", request(), prod.holder, grpc.StatusCode.FAILED_PRECONDITION
    )


def test_get_license_and_document_as_holder_issuer_or_nobody(prod: Prod) -> None:  # noqa: F811
    company = prod.issue()
    get = license_pb2.GetLicenseRequest(identifier=company.identifier)
    doc = license_pb2.GetLicenseDocumentRequest(identifier=company.identifier)
    for who in (DEPT, prod.rep, prod.agent):
        got: Any = prod.call("GetLicense", get, who)
        assert got.license.identifier == company.identifier
        pdf: Any = prod.call("GetLicenseDocument", doc, who)
        assert pdf.digest.value == company.document_digest.value
    roles = [a[2]["role"] for a in _actions(prod) if a[0].startswith("licence.read")]
    assert roles == ["issuer", "issuer", "representative", "representative", "agent", "agent"]
    denied = grpc.StatusCode.PERMISSION_DENIED
    for who in (prod.stranger, prod.seal_agent, prod.holder, OTHER_DEPT):
        _refused(prod, "GetLicense", get, who, denied)
        _refused(prod, "GetLicenseDocument", doc, who, denied)
    ident = parse_identifier(company.identifier, check_uscc=False)
    garbled = license_pb2.GetLicenseRequest(identifier=company.identifier[:-1] + "?")
    _refused(prod, "GetLicense", garbled, DEPT, grpc.StatusCode.INVALID_ARGUMENT)
    absent = license_pb2.GetLicenseRequest(identifier=str(ident.with_version(9)))
    _refused(prod, "GetLicense", absent, DEPT, grpc.StatusCode.NOT_FOUND)


def test_annotations_are_stored_and_returned(prod: Prod) -> None:  # noqa: F811
    v1 = prod.issue(skip_document=True)
    assert list(v1.annotations) == []
    v2: Any = prod.call(
        "AnnotateLicense",
        license_pb2.AnnotateLicenseRequest(
            identifier=v1.identifier, text="注册资本变更", fields={"KZ_ZCZB": "200万元人民币"},
            holder_name="福州示例科技集团有限公司", skip_document=True,
        ),
    )  # fmt: skip
    v3: Any = prod.call(
        "AnnotateLicense",
        license_pb2.AnnotateLicenseRequest(
            identifier=v2.license.identifier, text="经营范围变更",
            fields={"KZ_JYFW": "软件开发。"}, skip_document=True,
        ),
    )  # fmt: skip
    assert list(v2.previous.annotations) == []  # v1 had none
    first = v2.license.annotations
    assert [a.text for a in first] == ["注册资本变更"]
    assert first[0].identifier == v2.license.identifier
    assert list(first[0].changed_fields) == ["KZ_ZCZB", "CZZT"]
    assert first[0].annotated_by.display_name == DEPT.actor
    assert first[0].annotated_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    latest = v3.license
    assert [a.text for a in latest.annotations] == ["注册资本变更", "经营范围变更"]
    assert [a.identifier for a in latest.annotations] == [
        v2.license.identifier,
        latest.identifier,
    ]
    assert list(latest.annotations[1].changed_fields) == ["KZ_JYFW"]

    got: Any = prod.call("GetLicense", license_pb2.GetLicenseRequest(identifier=latest.identifier))
    assert list(got.license.annotations) == list(latest.annotations)
    middle: Any = prod.call(
        "GetLicense", license_pb2.GetLicenseRequest(identifier=v2.license.identifier)
    )
    assert [a.text for a in middle.license.annotations] == ["注册资本变更"]
    listed: Any = prod.call(
        "ListLicenses",
        license_pb2.ListLicensesRequest(issuer_code=ISSUER, include_superseded=True),
        DEPT,
    )
    by_id = {x.identifier: [a.text for a in x.annotations] for x in listed.licenses}
    assert by_id == {
        v1.identifier: [],
        v2.license.identifier: ["注册资本变更"],
        latest.identifier: ["注册资本变更", "经营范围变更"],
    }
    company: Any = prod.call(
        "ListLicenses", license_pb2.ListLicensesRequest(holder=_holder_ref(uscc=COMPANY)), prod.rep
    )
    assert [list(x.annotations) for x in company.licenses] == [list(latest.annotations)]
    # a refused annotation stores none
    with unchanged(prod.platform.db):
        prod.fails(
            "AnnotateLicense",
            license_pb2.AnnotateLicenseRequest(
                identifier=latest.identifier, text="变更", fields={"KZ_ZCZB": "很多钱"}
            ),
        )
    with prod.platform.db.read() as session:
        from license.models import LicenceAnnotationRow

        assert session.scalar(select(func.count()).select_from(LicenceAnnotationRow)) == 2
