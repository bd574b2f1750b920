"""The shared report model: verdict rules, summaries in both locales, the proto3 JSON mapping
(equal to the proto message's), and the signed JSON with the service certificate."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography import x509
from google.protobuf import json_format

from govtrust.api.verify import report_to_pb, report_to_pb_via_json
from govtrust.errors import InvalidArgument
from idp.types import IdentityKind, IdentityStatus, IdentitySummary
from license.errors import LicenceVerificationFailed
from seal.types import SealKind, SealStatus
from tests.seal.conftest import World
from tests.unchanged import unchanged
from verify.report import (
    CertificateProfile,
    CertificateReport,
    CertificateSummary,
    Coverage,
    Digest,
    DigestAlgorithm,
    DocumentReport,
    EvidenceKind,
    LicenseReport,
    LicenseStatus,
    ModificationLevel,
    PadesLevel,
    Reason,
    ReasonCode,
    ReportFormat,
    ReportOptions,
    RevocationReasonCode,
    RevocationReport,
    RevocationStatus,
    SealReport,
    SignatureFormat,
    SignatureReport,
    SigningTimeSource,
    StatusSource,
    TimestampReport,
    TokenKind,
    TokenReport,
    Verdict,
    build_report,
    combine,
    normalize_locale,
    verdict_of,
    verify_signed_report,
)
from verify.service import VerifyContext

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
PERSON = IdentitySummary(
    "cit_1", IdentityKind.CITIZEN, "张三", "1101**********002X", IdentityStatus.ACTIVE, 3
)


def test_verdict_rules() -> None:
    assert combine([Verdict.VALID, Verdict.VALID]) is Verdict.VALID
    assert combine([Verdict.VALID, Verdict.INDETERMINATE]) is Verdict.INDETERMINATE
    assert combine([Verdict.INDETERMINATE, Verdict.INVALID]) is Verdict.INVALID
    assert combine([Verdict.VALID, None]) is Verdict.INDETERMINATE  # a part not checked
    assert combine([]) is Verdict.INDETERMINATE  # nothing checked is never VALID
    assert verdict_of([]) is Verdict.VALID
    unknown = Reason(ReasonCode.REVOCATION_UNKNOWN, "x")
    revoked = Reason(ReasonCode.CERTIFICATE_REVOKED, "y")
    assert verdict_of([unknown]) is Verdict.INDETERMINATE
    assert verdict_of([unknown, revoked]) is Verdict.INVALID
    assert Reason(ReasonCode.UNKNOWN_ISSUER, "z").verdict is Verdict.INDETERMINATE


def test_locales() -> None:
    assert normalize_locale("") == "zh-CN" and normalize_locale("zh_cn") == "zh-CN"
    assert normalize_locale("en-GB") == "en"
    with pytest.raises(InvalidArgument) as info:
        ReportOptions(locale="de")
    assert info.value.violations[0].field == "report_options.locale"
    with pytest.raises(InvalidArgument):
        ReportOptions(reference="x" * 300)


def full_report(locale: str) -> object:
    cert_summary = CertificateSummary(
        "CN=张三,C=CN",
        "CN=govtrust Citizen CA",
        "0A1B",
        T0,
        T1,
        "ab" * 32,
        CertificateProfile.CITIZEN,
        "citizen",
        b"\x30\x00",
    )
    revocation = RevocationReport(
        RevocationStatus.REVOKED,
        StatusSource.OCSP,
        T0,
        T1,
        RevocationReasonCode.KEY_COMPROMISE,
        T0,
        T1,
        T2,
    )
    cert = CertificateReport(
        Verdict.INVALID,
        (Reason(ReasonCode.CERTIFICATE_REVOKED, "revoked", "chain[0]"),),
        cert_summary,
        (cert_summary,),
        True,
        T2,
        True,
        True,
        revocation,
        revocation,
        PERSON,
        "seal-1",
    )
    signature = SignatureReport(
        index=0,
        format=SignatureFormat.PADES,
        verdict=Verdict.INVALID,
        reasons=(Reason(ReasonCode.DIGEST_MISMATCH, "changed"),),
        field_name="Sig1",
        signer=PERSON,
        certificate=cert,
        seal=SealReport(
            "seal-1",
            SealKind.CONTRACT,
            "合同专用章",
            PERSON,
            SealStatus.ACTIVE,
            SealStatus.REVOKED,
            PERSON,
            Verdict.VALID,
        ),
        signing_time=T1,
        signing_time_source=SigningTimeSource.TIMESTAMP,
        timestamp=TimestampReport(Verdict.VALID, (), T1, cert, "1.2.3", "FF"),
        intact=False,
        signature_valid=True,
        coverage=Coverage.ENTIRE_REVISION,
        modification_level=ModificationLevel.OTHER,
        pades_level=PadesLevel.B_LTA,
        digest_algorithm=DigestAlgorithm.SHA256,
        signature_algorithm="ecdsa-with-SHA256",
        pages=(1, 2),
        reason="approve",
        location="福州",
    )
    return build_report(
        evidence_kind=EvidenceKind.PDF,
        evidence=b"%PDF-1.7 ...",
        options=ReportOptions(locale=locale, reference="ref-1"),
        checked_at=T2,
        signatures=[signature],
        certificate=cert,
        document=DocumentReport(5_000_000_000, Digest.sha256(b"x"), 3, 2, 1, True),
        license=LicenseReport(
            identifier="1.2.156.3005.2.x",
            status=LicenseStatus.REVOKED,
            status_source=StatusSource.STATUS_LIST,
            disclosed_fields={"ZZBH": "001"},
            matches_registry=True,
            version=1,
        ),
        token=TokenReport(
            kind=TokenKind.ID_TOKEN,
            audience=("a", "b"),
            amr=("pwd",),
            issued_at=T0,
            identity=PERSON,
            acting_for=PERSON,
            revoked=True,
        ),
        warnings=[Reason(ReasonCode.SEAL_NOT_ACTIVE, "seal revoked since", "signatures[0].seal")],
    )


def test_json_mapping_equals_the_proto_message() -> None:
    report = full_report("en")
    message = report_to_pb(report)  # type: ignore[arg-type]
    as_dict = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert report.to_json() == as_dict  # type: ignore[attr-defined]
    assert message == report_to_pb_via_json(report)  # type: ignore[arg-type]
    assert message.verdict == 2 and message.document.size_bytes == 5_000_000_000
    assert message.signatures[0].certificate.revocation_now.reason == 1
    assert message.token.identity.assurance_level == 3
    assert message.license.disclosed_fields["ZZBH"] == "001"
    assert as_dict["signatures"][0]["signing_time"] == "2026-01-02T03:04:05.123Z"
    assert as_dict["checked_at"] == "2026-01-02T03:04:05.123456Z"
    # report-level reasons gather the parts' reasons with their path
    subjects = [r["subject"] for r in as_dict["reasons"]]
    assert "signatures[0]" in subjects and "certificate.chain[0]" in subjects


def test_summaries_in_both_locales() -> None:
    en = full_report("en").summary  # type: ignore[attr-defined]
    zh = full_report("zh-CN").summary  # type: ignore[attr-defined]
    assert en.startswith("PDF document verification result: INVALID.")
    assert "Signature 1 (合同专用章): INVALID." in en and "Warning: seal revoked since" in en
    assert zh.startswith("PDF 文档验证结果：无效。") and "签名 1（合同专用章）：无效。" in zh
    assert "原因：" in zh


def test_signed_report_verifies_to_our_root(vworld: World, ctx: VerifyContext) -> None:
    report = full_report("en")
    options = ReportOptions(report_format=ReportFormat.SIGNED_JSON)
    _, signed = ctx.finish(report, options)  # type: ignore[arg-type]
    assert signed is not None
    roots = [x509.load_der_x509_certificate(i.der) for i in vworld.authority.chain("root")]
    payload = verify_signed_report(signed.jws, roots)
    assert payload == report.to_json() == json.loads(signed.json)  # type: ignore[attr-defined]
    # a different root does not accept it
    from tests.verify.conftest import TestCa

    with unchanged(vworld.db, vworld.keystore), pytest.raises(LicenceVerificationFailed):
        verify_signed_report(signed.jws, [TestCa().root])
    # the proto form is untouched by signing
    assert ctx.finish(report, ReportOptions())[1] is None  # type: ignore[arg-type]
