"""VerifyService over a real gRPC server (platform interceptor, bearer tokens, error mapping):
VerifyCertificate, VerifySealSignature and VerifyIdToken, signed JSON reports, bad input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509
from google.protobuf import json_format
from grpc_status import rpc_status
from sqlalchemy import select

from govtrust.audit import AuditRecord
from govtrust.principal import Principal
from govtrust.v1 import common_pb2, verify_pb2, verify_pb2_grpc
from seal.signdata import DataRequest, SignData
from tests.oidc.conftest import OidcEnv, oidc_env  # noqa: F401 - fixture
from tests.seal.conftest import World
from tests.unchanged import unchanged
from tests.verify.conftest import NOBODY, VERIFIER, TestCa, der, issue_citizen
from tests.verify.test_tokens import Tokens, tokens  # noqa: F401 - fixture
from verify.report import verify_signed_report
from verify.service import VerifyContext


@dataclass
class Handle:
    stub: verify_pb2_grpc.VerifyServiceStub
    tokens: dict[str, Principal]
    ctx: VerifyContext

    def call(self, method: str, request: Any, principal: Principal | None = VERIFIER) -> Any:
        metadata: tuple[tuple[str, str], ...] = ()
        if principal is not None:
            token = secrets.token_urlsafe(16)
            self.tokens[token] = principal
            metadata = (("authorization", f"Bearer {token}"),)
        return getattr(self.stub, method)(request, metadata=metadata, timeout=120)

    def fails(self, method: str, request: Any, principal: Principal | None = VERIFIER) -> Any:
        """Call ``method``, expect a refusal and that it stored nothing (rows, keys)."""
        with unchanged(self.ctx.db, self.ctx.keystore), pytest.raises(grpc.RpcError) as info:
            self.call(method, request, principal)
        return info.value


@contextmanager
def serve(ctx: VerifyContext, db: Any) -> Iterator[Handle]:
    """VerifyService on a free loopback port behind the platform interceptor."""
    from govtrust.api.verify import VerifyServicer
    from govtrust.config import Settings
    from govtrust.errors import Unauthenticated
    from govtrust.observability.metrics import get_metrics
    from govtrust.rpc.auth import Authenticator, set_token_resolver
    from govtrust.rpc.interceptors import GovtrustInterceptor

    bearer: dict[str, Principal] = {}

    def resolve(_platform: object, token: str) -> Principal:
        if token not in bearer:
            raise Unauthenticated("unknown test token")
        return bearer[token]

    @dataclass
    class _Platform:
        settings: Settings
        db: Any

    platform = _Platform(Settings(), db)
    set_token_resolver(resolve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="verify-grpc", daemon=True)
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
        verify_pb2_grpc.add_VerifyServiceServicer_to_server(VerifyServicer(ctx), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Handle(verify_pb2_grpc.VerifyServiceStub(channel), bearer, ctx)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        set_token_resolver(None)


@pytest.fixture
def grpc_verify(vworld: World, ctx: VerifyContext) -> Iterator[Handle]:
    with serve(ctx, vworld.db) as handle:
        yield handle


def field_of(error: Any) -> str:
    from google.rpc import error_details_pb2  # type: ignore[import-untyped]

    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return str(bad.field_violations[0].field)
    raise AssertionError("no BadRequest detail")


def test_verify_certificate_with_signed_json_report(
    vworld: World, ctx: VerifyContext, grpc_verify: Handle, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    request = verify_pb2.VerifyCertificateRequest(
        certificate=issued.certificate.der,
        purpose=verify_pb2.CERTIFICATE_PURPOSE_DOCUMENT_SIGNING,
        report_options=common_pb2.ReportOptions(
            report_format=common_pb2.REPORT_FORMAT_SIGNED_JSON, locale="en", reference="case-7"
        ),
    )
    response = grpc_verify.call("VerifyCertificate", request)
    report = response.report
    assert report.verdict == common_pb2.VERDICT_VALID
    assert report.evidence_kind == common_pb2.EVIDENCE_KIND_CERTIFICATE
    assert report.evidence_digest.value == hashlib.sha256(issued.certificate.der).digest()
    assert report.certificate.trusted and report.certificate.purpose_allowed
    assert report.certificate.identity.id == citizen
    assert report.certificate.certificate.profile == common_pb2.CERTIFICATE_PROFILE_CITIZEN
    assert report.certificate.revocation_now.status == common_pb2.REVOCATION_STATUS_GOOD
    assert report.certificate.revocation_now.source == common_pb2.STATUS_SOURCE_REGISTRY
    assert report.reference == "case-7" and report.report_id and report.summary
    # the audit record was committed before the answer
    with vworld.db.read() as session:
        row = session.scalar(select(AuditRecord).where(AuditRecord.action == "verify.certificate"))
    assert row is not None and report.report_id in row.details

    signed = response.signed_report
    roots = [x509.load_der_x509_certificate(i.der) for i in vworld.authority.chain("root")]
    payload = verify_signed_report(signed.jws, roots)
    assert payload == json_format.MessageToDict(report, preserving_proto_field_name=True)
    assert json.loads(signed.json) == payload
    signer = x509.load_der_x509_certificate(signed.signer_certificate)
    assert signer.subject.rfc4514_string() == "CN=govtrust-verification-service,C=CN"
    header = json.loads(base64.urlsafe_b64decode(signed.jws.split(".")[0] + "=="))
    assert base64.b64decode(header["x5c"][0]) == signed.signer_certificate
    # a second signed report reuses the same service certificate (found, not re-issued)
    again = grpc_verify.call("VerifyCertificate", request).signed_report
    assert again.signer_certificate == signed.signer_certificate
    # a tampered payload does not verify
    head, body, sig = signed.jws.split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged["verdict"] = "VERDICT_INVALID"
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    from license.errors import LicenceVerificationFailed

    with unchanged(vworld.db, vworld.keystore), pytest.raises(LicenceVerificationFailed):
        verify_signed_report(f"{head}.{forged_body}.{sig}", roots)


def test_verify_certificate_unknown_ca_and_bad_input(grpc_verify: Handle, other_ca: TestCa) -> None:
    response = grpc_verify.call(
        "VerifyCertificate",
        verify_pb2.VerifyCertificateRequest(certificate=der(other_ca.leaf())),
    )
    assert response.report.verdict == common_pb2.VERDICT_INDETERMINATE
    assert [r.code for r in response.report.reasons] == [common_pb2.REASON_CODE_UNKNOWN_ISSUER]
    assert not response.HasField("signed_report")
    assert "无法确定" in response.report.summary  # zh-CN by default

    error = grpc_verify.fails(
        "VerifyCertificate", verify_pb2.VerifyCertificateRequest(certificate=b"not a cert")
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(error) == "certificate"
    error = grpc_verify.fails(
        "VerifyCertificate",
        verify_pb2.VerifyCertificateRequest(
            certificate=der(other_ca.leaf()),
            report_options=common_pb2.ReportOptions(locale="fr"),
        ),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(error) == "report_options.locale"
    error = grpc_verify.fails(
        "VerifyCertificate",
        verify_pb2.VerifyCertificateRequest(certificate=der(other_ca.leaf()), purpose=99),  # type: ignore[arg-type]
    )
    assert field_of(error) == "purpose"


def test_roles_are_required(grpc_verify: Handle, other_ca: TestCa) -> None:
    request = verify_pb2.VerifyCertificateRequest(certificate=der(other_ca.leaf()))
    assert grpc_verify.fails("VerifyCertificate", request, NOBODY).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert grpc_verify.fails("VerifyCertificate", request, None).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_verify_seal_signature(vworld: World, grpc_verify: Handle) -> None:
    seal = vworld.active_seal()
    data = b"payment order 42"
    signed = SignData(vworld.service).sign(
        vworld.rep, DataRequest(seal.id, data=data, ses=True, timestamp=True)
    )
    response = grpc_verify.call(
        "VerifySealSignature",
        verify_pb2.VerifySealSignatureRequest(signature=signed.signature, data=data),
    )
    report = response.report
    assert report.verdict == common_pb2.VERDICT_VALID, report.reasons
    [sig] = report.signatures
    assert sig.format == common_pb2.SIGNATURE_FORMAT_SES_SIGNATURE
    assert sig.seal.seal_id == seal.id and sig.seal.status_now == common_pb2.SEAL_STATUS_ACTIVE
    assert sig.signing_time_source == common_pb2.SIGNING_TIME_SOURCE_TIMESTAMP
    digest_request = verify_pb2.VerifySealSignatureRequest(
        signature=signed.signature,
        digest=common_pb2.Digest(
            algorithm=common_pb2.DIGEST_ALGORITHM_SHA256,
            value=hashlib.sha256(b"other data").digest(),
        ),
    )
    report = grpc_verify.call("VerifySealSignature", digest_request).report
    assert report.verdict == common_pb2.VERDICT_INVALID
    assert [r.code for r in report.reasons] == [common_pb2.REASON_CODE_DIGEST_MISMATCH]
    error = grpc_verify.fails(
        "VerifySealSignature", verify_pb2.VerifySealSignatureRequest(signature=signed.signature)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(error) == "content"


def test_verify_id_token(
    oidc_env: OidcEnv,  # noqa: F811
    tokens: Tokens,  # noqa: F811
) -> None:
    ctx = VerifyContext(
        oidc_env.platform.db,
        oidc_env.platform.keystore,
        platform=oidc_env.platform,
        provider=oidc_env.provider,
    )
    try:
        with serve(ctx, oidc_env.platform.db) as handle:
            response = handle.call(
                "VerifyIdToken",
                verify_pb2.VerifyIdTokenRequest(
                    token=tokens.body["id_token"],
                    expected_audience=tokens.client_id,
                    report_options=common_pb2.ReportOptions(
                        report_format=common_pb2.REPORT_FORMAT_SIGNED_JSON
                    ),
                ),
            )
            assert response.report.verdict == common_pb2.VERDICT_VALID, response.report.reasons
            assert response.identity.id == oidc_env.citizen_id
            assert response.report.token.identity.id == oidc_env.citizen_id
            assert response.report.token.kind == common_pb2.TOKEN_KIND_ID_TOKEN
            assert response.signed_report.jws
            head, body, _ = tokens.body["id_token"].split(".")
            none = json.loads(base64.urlsafe_b64decode(head + "=="))
            none["alg"] = "none"
            forged_head = base64.urlsafe_b64encode(json.dumps(none).encode()).rstrip(b"=")
            response = handle.call(
                "VerifyIdToken",
                verify_pb2.VerifyIdTokenRequest(token=f"{forged_head.decode()}.{body}."),
            )
            assert response.report.verdict == common_pb2.VERDICT_INVALID
            assert not response.HasField("identity")
            error = handle.fails("VerifyIdToken", verify_pb2.VerifyIdTokenRequest(token="x"))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field_of(error) == "token"
    finally:
        ctx.close()


def test_servicer_factory_warms_the_context(database_url: str, tmp_path: Any) -> None:
    """The production factory builds the process's context and issues the report signer's
    certificate at start (once: a second process finds it)."""
    from ca.models import CaCertificate
    from govtrust.api.verify import servicer
    from govtrust.config import Settings
    from govtrust.server.wiring import open_wired
    from verify.service import SERVICE_SYSTEM_ID

    platform = open_wired(Settings(data_dir=tmp_path / "data", database_url=database_url))
    try:
        first = servicer(platform)
        assert first.context.report_signer.chain[0].subject.rfc4514_string() == (
            f"CN={SERVICE_SYSTEM_ID},C=CN"
        )
        with platform.db.read() as session:
            rows = list(
                session.scalars(
                    select(CaCertificate).where(CaCertificate.system_id == SERVICE_SYSTEM_ID)
                )
            )
        assert len(rows) == 1 and rows[0].profile == "service" and rows[0].key_id
        other = VerifyContext(platform.db, platform.keystore, platform=platform)
        try:
            other.warm()
            assert other.report_signer.certificate_der == rows[0].der
        finally:
            other.close()
    finally:
        first.context.close()
        platform.close()
