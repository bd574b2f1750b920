"""IssueLicense end to end: registry check, fields, identifier, signed data, QR, status, audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import select

from govtrust.audit import AuditRecord, verify_chain
from govtrust.db import Database
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from govtrust.principal import SYSTEM, Principal
from hsm.errors import KeyDestroyed
from hsm.master import MasterKey
from hsm.soft import SoftKeyStore
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from idp.types import IdentityRef
from license import catalogue
from license.checking import LicenceCheck, State, Verdict, check_qr, check_signed_data
from license.identifiers import parse_identifier
from license.issuance import IssuedLicence, IssueRequest, LicenceService
from license.models import LicenceRow
from license.qr import TrustList, decode_payload, kid_of
from license.signed_data import verify_licence
from license.status_list import (
    LicenceStatus,
    build_status_list,
    verify_status_list,
)
from tests.license.conftest import MiniCa, make_signer
from tests.license.test_catalogue import GOOD_BL
from tests.unchanged import unchanged

ISSUER = catalogue.EXAMPLE_ISSUER
DEPT = Principal("service", "amr-system", frozenset({f"licence-issuer:{ISSUER}"}))
OTHER_DEPT = Principal("service", "x", frozenset({"licence-issuer:91350100M000100Y43"}))
REGISTRAR = Principal("user", "registrar", frozenset({"identity-registrar"}))
COMPANY = "91350100M000100Y43"
CITIZEN_ID = "11010519491231002X"


@pytest.fixture
def setup(database: Database, test_ca: MiniCa) -> Iterator[tuple[LicenceService, TrustList]]:
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
    yield LicenceService(database, registry, lambda _dept: signer, master_key=master), trust
    store.close()
    registry.reader.close()


def _request(**overrides: object) -> IssueRequest:
    values: dict[str, object] = {
        "type_code": catalogue.BUSINESS_LICENCE_CODE,
        "issuer_code": ISSUER,
        "issuer_name": "测试市市场监督管理局",
        "holder_code_type": "001",
        "holder_code": COMPANY,
        "fields": GOOD_BL,
        "valid_from": date(2015, 6, 1),
    }
    values.update(overrides)
    return IssueRequest(**values)  # type: ignore[arg-type]


def test_issue_verifies_on_signed_data_and_qr(
    setup: tuple[LicenceService, TrustList], test_ca: MiniCa, database: Database
) -> None:
    service, trust = setup
    issued = service.issue(DEPT, _request())
    ident = parse_identifier(issued.identifier)
    assert ident.issuer_code == ISSUER and ident.version == 1
    verified = verify_licence(issued.signed_data, [test_ca.root])
    assert verified.metadata.holder_name == "福州示例科技有限公司"
    assert verified.metadata.fields["KZ_FDDBR"] == "张三"
    qr = decode_payload(issued.qr_payload, trust)
    assert qr.identifier == issued.identifier and qr.matches(verified.metadata)
    assert len(issued.qr_payload) <= 600
    with database.read() as session:
        actions = session.scalars(select(AuditRecord.action)).all()
        assert "licence.issue" in actions
        assert verify_chain(session).ok


def test_citizen_holder_and_type_restrictions(setup: tuple[LicenceService, TrustList]) -> None:
    service, _ = setup
    with unchanged(service.db), pytest.raises(InvalidArgument) as info:
        service.issue(DEPT, _request(holder_code_type="111", holder_code=CITIZEN_ID))
    assert info.value.violations[0].field == "holder_code_type"
    with unchanged(service.db), pytest.raises(NotFound):
        service.issue(DEPT, _request(holder_code="11100000000013338W"))  # not registered
    with unchanged(service.db), pytest.raises(InvalidArgument):
        service.issue(DEPT, _request(holder_code="91350100M000100Y44"))


def test_field_errors_and_permissions(setup: tuple[LicenceService, TrustList]) -> None:
    service, _ = setup
    with unchanged(service.db), pytest.raises(InvalidArgument) as info:
        service.issue(DEPT, _request(fields={**GOOD_BL, "KZ_CLRQ": "yesterday"}))
    assert [v.field for v in info.value.violations] == ["fields.KZ_CLRQ"]
    with unchanged(service.db), pytest.raises(PermissionDenied):
        service.issue(OTHER_DEPT, _request())
    with unchanged(service.db), pytest.raises(PermissionDenied):
        service.issue(OTHER_DEPT, _request(issuer_code="91350100M000100Y43"))


def test_status_changes_and_status_list(
    setup: tuple[LicenceService, TrustList], database: Database
) -> None:
    service, _ = setup
    a = service.issue(DEPT, _request())
    b = service.issue(DEPT, _request())
    service.suspend(DEPT, a.identifier, "挂失")
    service.revoke(DEPT, b.identifier, "注销登记")
    with database.read() as session:
        statuses = build_status_list(session, ISSUER)
    assert a.metadata.status_index is not None and b.metadata.status_index is not None
    assert statuses.get(a.metadata.status_index) is LicenceStatus.SUSPENDED
    assert statuses.get(b.metadata.status_index) is LicenceStatus.REVOKED
    service.resume(DEPT, a.identifier, "找回")
    assert service.get(a.identifier).status == "valid"
    with unchanged(service.db), pytest.raises(FailedPrecondition):
        service.resume(DEPT, b.identifier, "no")
    with unchanged(service.db), pytest.raises(InvalidArgument):
        service.revoke(DEPT, a.identifier, "  ")
    with unchanged(service.db), pytest.raises(PermissionDenied):
        service.revoke(OTHER_DEPT, a.identifier, "x")


def test_new_version_links_and_supersedes(
    setup: tuple[LicenceService, TrustList], test_ca: MiniCa
) -> None:
    service, trust = setup
    v1 = service.issue(DEPT, _request())
    v2 = service.new_version(DEPT, v1.identifier, fields={"KZ_ZS": "新地址1号"}, reason="住所变更")
    assert parse_identifier(v2.identifier).version == 2
    assert v2.previous == v1.identifier
    meta = verify_licence(v2.signed_data, [test_ca.root]).metadata
    assert meta.fields["KZ_ZS"] == "新地址1号" and meta.previous == v1.identifier
    assert decode_payload(v2.qr_payload, trust).identifier == v2.identifier
    old = service.get(v1.identifier)
    assert old.superseded_by == v2.identifier and old.status == "revoked"
    with unchanged(service.db), pytest.raises(FailedPrecondition):
        service.new_version(DEPT, v1.identifier, fields={}, reason="again")


def test_checks_report_valid_revoked_suspended_expired_tampered_unknown(
    setup: tuple[LicenceService, TrustList], test_ca: MiniCa, database: Database
) -> None:
    service, trust = setup
    signer = service.signers(ISSUER)
    good = service.issue(DEPT, _request())
    revoked = service.issue(DEPT, _request())
    suspended = service.issue(DEPT, _request())
    expired = service.issue(
        DEPT,
        _request(
            type_code=catalogue.USCC_CERTIFICATE_CODE,
            fields={
                "KZ_TYSHXYDM": COMPANY, "KZ_JGMC": "某机构", "KZ_JGLX": "事业单位",
                "KZ_FZR": "张三", "KZ_JGDZ": "福州", "KZ_BFJG": "编办",
            },
            valid_from=date(2015, 1, 1),
        ),
    )  # fmt: skip
    service.revoke(DEPT, revoked.identifier, "注销")
    service.suspend(DEPT, suspended.identifier, "停用")
    token = service.status_list_token(ISSUER)  # re-signed by each status change
    lists = {ISSUER: verify_status_list(token, [test_ca.root], issuer_code=ISSUER)}
    assert signer.chain[0] == trust.get(kid_of(signer.chain[0])).certificate  # type: ignore[union-attr]

    def both(issued: IssuedLicence) -> tuple[LicenceCheck, LicenceCheck]:
        return (
            check_qr(issued.qr_payload, trust, lists),
            check_signed_data(issued.signed_data, [test_ca.root], lists),
        )

    for report in both(good):
        assert (report.verdict, report.state) == (Verdict.VALID, State.VALID)
        assert report.holder_name == "福州示例科技有限公司"
    for report in both(revoked):
        assert (report.verdict, report.state, report.reasons) == (
            Verdict.INVALID, State.REVOKED, ("REVOKED",),
        )  # fmt: skip
    for report in both(suspended):
        assert report.state is State.SUSPENDED
    for report in both(expired):
        assert (report.verdict, report.state) == (Verdict.INVALID, State.EXPIRED)
    # no status list → indeterminate
    assert check_qr(good.qr_payload, trust, {}).verdict is Verdict.INDETERMINATE
    # tampered signed data / unknown key
    header, payload, sig = good.signed_data.split(".")
    tampered = f"{header}.{payload[:-4]}AAAA.{sig}"
    report = check_signed_data(tampered, [test_ca.root], lists)
    assert report.verdict is Verdict.INVALID and report.reasons[0] in {"BAD_SIGNATURE", "MALFORMED"}
    unknown = check_qr(good.qr_payload, TrustList([test_ca.root]), lists)
    assert (unknown.verdict, unknown.reasons[0]) == (Verdict.INVALID, "UNKNOWN_KEY")


def test_issue_many_is_all_or_nothing(
    setup: tuple[LicenceService, TrustList], database: Database
) -> None:
    service, trust = setup
    issued = service.issue_many(DEPT, [_request(), _request(), _request()])
    assert len({i.identifier for i in issued}) == 3
    assert len({i.metadata.status_index for i in issued}) == 3
    assert all(decode_payload(i.qr_payload, trust).identifier == i.identifier for i in issued)
    with unchanged(service.db), pytest.raises(InvalidArgument) as info:
        service.issue_many(DEPT, [_request(), _request(fields={**GOOD_BL, "KZ_MC": ""})])
    assert info.value.violations[0].field == "requests[1].fields.KZ_MC"
    with database.read() as session:
        assert len(session.scalars(select(LicenceRow.identifier)).all()) == 3
        assert session.scalars(select(AuditRecord.action)).all().count("licence.issue") == 3


def test_duplicate_serial_is_already_exists(setup: tuple[LicenceService, TrustList]) -> None:
    service, _ = setup
    service.issue(DEPT, _request(serial="2024ABC"))
    with unchanged(service.db), pytest.raises(AlreadyExists):
        service.issue(DEPT, _request(serial="2024ABC"))
    with unchanged(service.db), pytest.raises(AlreadyExists):
        service.issue_many(DEPT, [_request(serial="2024X"), _request(serial="2024X")])


def test_a_failure_after_reserving_leaves_an_unused_index_that_stays_valid(
    setup: tuple[LicenceService, TrustList], database: Database, test_ca: MiniCa
) -> None:
    """Signing happens outside any transaction, after the status indexes were reserved: when
    it fails nothing is stored or audited, the reserved index is simply never used, and the
    published status list reports it valid (0). (The sealed-PDF path, whose time-stamp writes
    in its own transaction, runs on SQLite in test_production.py: no nested writer.)"""
    service, _ = setup
    first = service.issue(DEPT, _request())
    assert first.metadata.status_index == 0
    signer = service.signers(ISSUER)
    with database.read() as session:
        audit_before = len(session.scalars(select(AuditRecord.seq)).all())
    signer.keystore.destroy(signer.key)
    # by design the refused issuance keeps its reserved status index (the list's next index
    # moves on, see the docstring); nothing else changes: no licence, claim or audit record
    with (
        unchanged(service.db, allow=["licence_status_lists"]),
        pytest.raises(KeyDestroyed),
    ):
        service.issue(DEPT, _request())
    with database.read() as session:
        assert len(session.scalars(select(LicenceRow)).all()) == 1
        assert len(session.scalars(select(AuditRecord.seq)).all()) == audit_before
    fresh = make_signer(SoftKeyStore(database, MasterKey.generate()), test_ca, uscc=ISSUER)
    service.signers = lambda _dept: fresh
    second = service.issue(DEPT, _request())
    assert second.metadata.status_index == 2  # index 1 was reserved by the failed attempt
    statuses = verify_status_list(service.status_list_token(ISSUER), [test_ca.root]).statuses
    assert [statuses.get(i) for i in range(3)] == [LicenceStatus.VALID] * 3
    stored = service.stored(second.identifier)
    assert stored.signed_data == second.signed_data and stored.document_pdf is None
    with database.read() as session:
        row = session.get(LicenceRow, second.identifier)
        assert row is not None and row.signed_data.startswith("gt1:")
        assert second.signed_data not in row.signed_data


def test_the_issue_date_is_the_beijing_day(
    setup: tuple[LicenceService, TrustList], test_ca: MiniCa
) -> None:
    """At 01:30 Beijing time (17:30 UTC the day before) a licence is issued, and a new version
    made, on the Beijing day: ZZBFRQ agrees with the validity that starts that day."""
    from datetime import UTC, datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from license.days import licence_day

    service, _ = setup
    day = licence_day() + timedelta(days=1)
    moment = datetime.combine(day, time(1, 30), ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    assert moment.date() == day - timedelta(days=1)  # the UTC date is the day before
    service._clock = lambda: moment
    issued = service.issue(DEPT, _request(valid_from=None))
    meta = verify_licence(issued.signed_data, [test_ca.root]).metadata
    assert (meta.issue_date, meta.valid_from) == (day, day)
    v2 = service.new_version(DEPT, issued.identifier, fields={"KZ_ZS": "新地址1号"}, reason="变更")
    assert verify_licence(v2.signed_data, [test_ca.root]).metadata.issue_date == day


def test_the_one_verifier_checks_every_form_alike(
    setup: tuple[LicenceService, TrustList], test_ca: MiniCa, database: Database
) -> None:
    """license.verification: identifier, signed data and QR payload of one licence get the same
    answer; an unknown identifier is NotFound, a malformed one names its fault, a file that
    holds no licence is MALFORMED with nothing read, and nothing is written."""
    from license.identifiers import InvalidLicenceIdentifier
    from license.verification import LICENCE_FORMS, LicenceVerifier

    service, trust = setup
    good = service.issue(DEPT, _request())
    revoked = service.issue(DEPT, _request())
    service.revoke(DEPT, revoked.identifier, "注销")
    verifier = LicenceVerifier(service, [test_ca.root], lambda: trust)
    assert LICENCE_FORMS == ("identifier", "signed_data", "qr_payload", "document")
    with unchanged(database):
        for issued, expected in ((good, State.VALID), (revoked, State.REVOKED)):
            by_id = verifier.check("identifier", issued.identifier)
            assert by_id.stored is not None and by_id.signed_data == issued.signed_data
            by_data = verifier.check("signed_data", issued.signed_data)
            by_qr = verifier.check("qr_payload", issued.qr_payload)
            assert by_qr.signed_data == "" and by_qr.stored is None
            for checked in (by_id, by_data, by_qr):
                assert checked.check.state is expected
                assert checked.check.identifier == issued.identifier
        # without the department trust list the QR's key is unknown
        roots_only = LicenceVerifier(service, [test_ca.root]).check("qr_payload", good.qr_payload)
        assert roots_only.check.reasons[0] == "UNKNOWN_KEY"
        unknown = str(parse_identifier(good.identifier).with_version(9))
        with pytest.raises(NotFound):
            verifier.check("identifier", unknown)
        with pytest.raises(InvalidLicenceIdentifier):
            verifier.check("identifier", "not-an-identifier")
        garbage = verifier.check("document", b"%PDF-1.7\nnot really")
        assert garbage.embedded is None and garbage.signed_data == ""
        assert garbage.check.verdict is Verdict.INVALID and garbage.check.reasons[0] == "MALFORMED"


def test_the_issuing_department_comes_from_the_request_or_the_one_role() -> None:
    from license.issuance import issuing_department

    assert issuing_department(DEPT) == ISSUER  # the caller's one department
    assert issuing_department(DEPT, ISSUER) == ISSUER
    two = Principal(
        "service", "both", frozenset({f"licence-issuer:{ISSUER}", f"licence-issuer:{COMPANY}"})
    )
    assert issuing_department(two, COMPANY) == COMPANY
    with pytest.raises(InvalidArgument, match="exactly one department") as several:
        issuing_department(two)
    assert several.value.violations[0].field == "issuer_code"
    with pytest.raises(InvalidArgument, match="exactly one department"):
        issuing_department(REGISTRAR)
    with pytest.raises(InvalidArgument) as malformed:
        issuing_department(DEPT, "91350100M000100Y4X")  # wrong check character
    assert malformed.value.violations[0].field == "issuer_code"
    assert type(malformed.value) is InvalidArgument
    with pytest.raises(PermissionDenied, match=f"may not issue for department {COMPANY}"):
        issuing_department(DEPT, COMPANY)


def test_the_cluster_job_re_signs_aged_status_lists_under_its_fence(
    setup: tuple[LicenceService, TrustList], database: Database
) -> None:
    from datetime import timedelta

    from govtrust.lease import StaleFence, acquire, release
    from license.models import LicenceStatusListRow

    service, _ = setup
    service.issue(DEPT, _request())  # reserves a status index; the list is signed on demand
    lease = acquire(database, "licence.status-lists", "A", 30)
    assert lease is not None
    assert service.refresh_status_lists(lease.fence) == [ISSUER]  # never signed: due
    assert service.refresh_status_lists(lease.fence) == []  # fresh: nothing due
    real_clock = service._clock
    service._clock = lambda: real_clock() + timedelta(minutes=31)  # past half the 1 h ttl
    release(database, lease)
    successor = acquire(database, "licence.status-lists", "B", 30)
    assert successor is not None
    with unchanged(database), pytest.raises(StaleFence):
        service.refresh_status_lists(lease.fence)  # the old leader's re-signing is refused
    with database.read() as session:
        before = session.get(LicenceStatusListRow, ISSUER)
        assert before is not None
        issued_before = before.token_issued_at
    assert service.refresh_status_lists(successor.fence) == [ISSUER]
    with database.read() as session:
        after = session.get(LicenceStatusListRow, ISSUER)
        assert after is not None and after.token_issued_at != issued_before
