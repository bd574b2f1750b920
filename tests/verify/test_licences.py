"""VerifyLicense over a production platform (real licence service, department seal, CA root):
valid by identifier, signed data, QR payload and sealed PDF; revoked; a tampered field; an
unknown signing key; unknown and malformed identifiers; and the gRPC adapter."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest

from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from govtrust.v1 import common_pb2, license_pb2, verify_pb2, verify_pb2_grpc
from hsm import SoftKeyStore
from license.qr import encode_payload
from license.signed_data import verify_licence as verify_signed
from tests.license import test_production
from tests.license.conftest import ISSUER, make_ca, make_signer
from tests.license.test_production import Prod
from tests.unchanged import unchanged
from tests.verify.conftest import NOBODY, VERIFIER
from verify.licences import LicenceCheckRequest, verify_licence_check
from verify.report import (
    EvidenceKind,
    LicenseStatus,
    ReasonCode,
    SignatureFormat,
    Verdict,
    VerificationReport,
)
from verify.service import VerifyContext, context_for

prod = test_production.prod  # the production platform fixture

DEPT = Principal("service", "amr-system", frozenset({f"licence-issuer:{ISSUER}"}))


@pytest.fixture
def vctx(prod: Prod) -> VerifyContext:
    """The platform's verification context (its licence runtime is the platform's)."""
    return context_for(prod.platform)


def check(context: VerifyContext, form: str, value: str | bytes) -> VerificationReport:
    """One VerifyLicense call in domain terms, audited."""
    verified = verify_licence_check(
        context,
        VERIFIER,
        LicenceCheckRequest(form, value),  # type: ignore[arg-type]
    )
    verified.audited.result(timeout=30)
    return verified.report


def codes(report: VerificationReport) -> set[ReasonCode]:
    """The reason codes of a report."""
    return {r.code for r in report.reasons}


def _document(prod: Prod, identifier: str) -> bytes:
    response = prod.call(
        "GetLicenseDocument", license_pb2.GetLicenseDocumentRequest(identifier=identifier)
    )
    pdf: bytes = response.document  # type: ignore[attr-defined]
    return pdf


def test_valid_licence_in_every_form(prod: Prod, vctx: VerifyContext) -> None:
    licence = prod.issue()
    forms: dict[str, str | bytes] = {
        "identifier": licence.identifier,
        "signed_data": licence.signed_data,
        "qr_payload": licence.qr_payload,
        "document": _document(prod, licence.identifier),
    }
    expected_kind = {
        "identifier": EvidenceKind.LICENSE_IDENTIFIER,
        "signed_data": EvidenceKind.LICENSE_SIGNED_DATA,
        "qr_payload": EvidenceKind.LICENSE_QR_PAYLOAD,
        "document": EvidenceKind.LICENSE_DOCUMENT,
    }
    for form, value in forms.items():
        report = check(vctx, form, value)
        assert report.verdict is Verdict.VALID, (form, report.reasons)
        assert report.evidence_kind is expected_kind[form]
        facts = report.license
        assert facts is not None and facts.identifier == licence.identifier, form
        assert facts.status is LicenseStatus.VALID and facts.matches_registry, form
        assert facts.issuer_code == ISSUER and facts.holder_name, form
        assert report.signatures and report.signatures[0].verdict is Verdict.VALID, form
    pdf_report = check(vctx, "document", forms["document"])
    assert pdf_report.document is not None and pdf_report.document.signature_count == 1
    assert pdf_report.signatures[0].format is SignatureFormat.PADES
    assert pdf_report.signatures[0].seal is not None
    assert pdf_report.signatures[0].seal.seal_id == prod.seal.id
    jws = check(vctx, "signed_data", licence.signed_data)
    assert jws.signatures[0].format is SignatureFormat.JWS
    assert jws.signatures[0].certificate is not None and jws.signatures[0].certificate.trusted
    assert jws.license is not None and jws.license.valid_from == "2015-06-01"
    qr = check(vctx, "qr_payload", licence.qr_payload)
    assert qr.signatures[0].format is SignatureFormat.COSE_SIGN1


def test_revoked_licence(prod: Prod, vctx: VerifyContext) -> None:
    licence = prod.issue()
    prod.call(
        "RevokeLicense",
        license_pb2.RevokeLicenseRequest(identifier=licence.identifier, reason="注销登记"),
    )
    for form in ("identifier", "signed_data", "qr_payload"):
        report = check(vctx, form, getattr(licence, form))
        assert report.verdict is Verdict.INVALID, form
        assert codes(report) == {ReasonCode.LICENSE_REVOKED}, (form, report.reasons)
        assert report.license is not None and report.license.status is LicenseStatus.REVOKED
        # the signature itself is still good: the licence's status is what failed
        assert report.signatures[0].verdict is Verdict.VALID
    report = check(vctx, "identifier", licence.identifier)
    assert report.license is not None and report.license.status_reason == "注销登记"


def test_tampered_field(prod: Prod, vctx: VerifyContext) -> None:
    licence = prod.issue()
    header, payload, signature = licence.signed_data.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims  # the licence data as the department signed it
    claims["CZZT"] = "福州冒名科技有限公司"  # another holder
    text = json.dumps(claims, ensure_ascii=False)
    forged = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    report = check(vctx, "signed_data", f"{header}.{forged}.{signature}")
    assert report.verdict is Verdict.INVALID
    assert codes(report) == {ReasonCode.SIGNATURE_INVALID}, report.reasons
    assert report.signatures[0].verdict is Verdict.INVALID
    assert report.license is not None and not report.license.matches_registry

    # a QR payload with one byte changed
    qr = licence.qr_payload
    flipped = qr[:-8] + ("A" if qr[-8] != "A" else "B") + qr[-7:]
    report = check(vctx, "qr_payload", flipped)
    assert report.verdict is Verdict.INVALID
    assert codes(report) & {ReasonCode.SIGNATURE_INVALID, ReasonCode.FORMAT_ERROR}


def test_unknown_key(prod: Prod, vctx: VerifyContext) -> None:
    licence = prod.issue()
    metadata = verify_signed(licence.signed_data, [prod.root]).metadata
    keystore = prod.platform.keystore
    assert isinstance(keystore, SoftKeyStore)
    stranger = make_signer(keystore, make_ca("somebody else's root"), uscc=ISSUER)
    report = check(vctx, "qr_payload", encode_payload(stranger, metadata))
    assert report.verdict is Verdict.INDETERMINATE
    assert codes(report) == {ReasonCode.UNKNOWN_ISSUER}, report.reasons


def test_unknown_and_malformed_identifiers(prod: Prod, vctx: VerifyContext) -> None:
    licence = prod.issue()
    parts = licence.identifier.split(".")
    # the same shape with another serial: well formed, not registered
    from license.identifiers import parse_identifier

    parse_identifier(licence.identifier, check_uscc=False)
    unknown = ".".join([*parts[:-3], "1" + parts[-3][1:], *parts[-2:]])
    try:
        parse_identifier(unknown, check_uscc=False)
    except InvalidArgument:
        unknown = ""
    if unknown:
        report = check(vctx, "identifier", unknown)
        assert report.verdict is Verdict.INVALID
        assert codes(report) == {ReasonCode.LICENSE_NOT_FOUND}
    with unchanged(vctx.db, vctx.keystore), pytest.raises(InvalidArgument):
        check(vctx, "identifier", "1.2.156.3005.2.not-an-identifier")
    with unchanged(vctx.db, vctx.keystore), pytest.raises(InvalidArgument, match="required"):
        check(vctx, "signed_data", "")
    from govtrust.errors import PermissionDenied

    with unchanged(vctx.db, vctx.keystore), pytest.raises(PermissionDenied):
        verify_licence_check(vctx, NOBODY, LicenceCheckRequest("identifier", licence.identifier))


# --- over gRPC --------------------------------------------------------------------------------


@dataclass
class _Handle:
    stub: verify_pb2_grpc.VerifyServiceStub
    tokens: dict[str, Principal]

    def call(self, request: verify_pb2.VerifyLicenseRequest) -> verify_pb2.VerifyLicenseResponse:
        token = secrets.token_urlsafe(16)
        self.tokens[token] = VERIFIER
        response: verify_pb2.VerifyLicenseResponse = self.stub.VerifyLicense(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=120
        )
        return response


@pytest.fixture
def verify_server(prod: Prod, vctx: VerifyContext) -> Iterator[_Handle]:
    from govtrust.api.verify import VerifyServicer
    from govtrust.errors import Unauthenticated
    from govtrust.observability.metrics import get_metrics
    from govtrust.rpc.auth import Authenticator, set_token_resolver
    from govtrust.rpc.interceptors import GovtrustInterceptor

    tokens = prod.handle.tokens  # shared with the licence servicer the fixture serves

    def resolve(_platform: object, token: str) -> Principal:
        if token not in tokens:
            raise Unauthenticated("unknown test token")
        return tokens[token]

    set_token_resolver(resolve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="verify-licence", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            interceptors=[
                GovtrustInterceptor(
                    Authenticator(prod.platform, trust_insecure_loopback=False), get_metrics()
                )
            ]
        )
        verify_pb2_grpc.add_VerifyServiceServicer_to_server(
            VerifyServicer(vctx, prod.platform), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield _Handle(verify_pb2_grpc.VerifyServiceStub(channel), tokens)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_verify_license_over_grpc(prod: Prod, verify_server: _Handle) -> None:
    licence = prod.issue()
    response = verify_server.call(
        verify_pb2.VerifyLicenseRequest(
            evidence=license_pb2.LicenseEvidence(signed_data=licence.signed_data),
            report_options=common_pb2.ReportOptions(
                report_format=common_pb2.REPORT_FORMAT_SIGNED_JSON
            ),
        )
    )
    report = response.report
    assert report.verdict == common_pb2.VERDICT_VALID, report
    assert report.license.identifier == licence.identifier and report.license.matches_registry
    assert report.license.status == common_pb2.LICENSE_STATUS_VALID
    assert report.license.status_source == common_pb2.STATUS_SOURCE_STATUS_LIST
    assert response.signed_report.jws and report.evidence_kind == (
        common_pb2.EVIDENCE_KIND_LICENSE_SIGNED_DATA
    )
    with unchanged(prod.platform.db, prod.platform.keystore), pytest.raises(grpc.RpcError) as info:
        verify_server.call(
            verify_pb2.VerifyLicenseRequest(
                evidence=license_pb2.LicenseEvidence(identifier="not-an-identifier")
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_superseded_licence(prod: Prod, vctx: VerifyContext) -> None:
    from tests.license.test_catalogue import GOOD_BL

    licence = prod.issue(skip_document=True)
    changed = {**GOOD_BL, "KZ_ZCZB": "800万元"}
    newer = prod.runtime.service.new_version(
        DEPT, licence.identifier, fields=changed, reason="注册资本变更", document=False
    )
    old = check(vctx, "signed_data", licence.signed_data)
    assert old.verdict is Verdict.INVALID
    assert codes(old) == {ReasonCode.LICENSE_SUPERSEDED}, old.reasons
    assert old.license is not None and old.license.status is LicenseStatus.SUPERSEDED
    assert old.license.latest_identifier == newer.identifier
    current = check(vctx, "identifier", newer.identifier)
    assert current.verdict is Verdict.VALID, current.reasons
    assert current.license is not None and current.license.version == 2


def test_malformed_issuer_name_over_grpc(prod: Prod, verify_server: _Handle) -> None:
    """VerifyService.VerifyLicense: a certificate with an unparsable issuer name is an invalid
    (FORMAT_ERROR) report, not INTERNAL."""
    from tests.license.conftest import with_malformed_issuer

    licence = prod.issue(skip_document=True)
    response = verify_server.call(
        verify_pb2.VerifyLicenseRequest(
            evidence=license_pb2.LicenseEvidence(
                signed_data=with_malformed_issuer(licence.signed_data)
            )
        )
    )
    assert response.report.verdict == common_pb2.VERDICT_INVALID
    assert response.report.reasons[0].code == common_pb2.REASON_CODE_FORMAT_ERROR


def test_a_licence_ofd_with_an_sm2_seal(prod: Prod, vctx: VerifyContext) -> None:
    """VerifyLicense with a sealed OFD (the department seal is SM2, the production default):
    the licence check of license.ofd_check and every SES signature as VerifyOfd reports it."""
    from tests.license.test_ofd_issuance import _formats

    _formats(prod, "ofd")
    licence = prod.issue()
    response = prod.call(
        "GetLicenseDocument",
        license_pb2.GetLicenseDocumentRequest(
            identifier=licence.identifier, format=license_pb2.LICENSE_DOCUMENT_FORMAT_OFD
        ),
    )
    ofd: bytes = response.document  # type: ignore[attr-defined]
    report = check(vctx, "document", ofd)
    assert report.verdict is Verdict.VALID, (report.reasons, report.signatures)
    assert report.evidence_kind is EvidenceKind.LICENSE_DOCUMENT
    facts = report.license
    assert facts is not None and facts.identifier == licence.identifier
    assert facts.status is LicenseStatus.VALID and facts.matches_registry
    assert report.document is not None and report.document.signature_count == 1
    [signature] = report.signatures
    assert signature.format is SignatureFormat.SES_SIGNATURE
    assert signature.signature_algorithm == "SM2-with-SM3", signature
    assert signature.seal is not None and signature.seal.seal_id == prod.seal.id

    prod.call(
        "RevokeLicense",
        license_pb2.RevokeLicenseRequest(identifier=licence.identifier, reason="注销登记"),
    )
    revoked = check(vctx, "document", ofd)
    assert revoked.verdict is Verdict.INVALID
    assert codes(revoked) == {ReasonCode.LICENSE_REVOKED}, revoked.reasons
    assert revoked.signatures[0].verdict is Verdict.VALID  # the seal itself is still good
