"""Bad input gets a clear, specific error and changes nothing (no certificate, no key, no audit
record): malformed DER/PEM, a CSR with a bad signature, weak keys, unknown profiles, inactive
identities, missing authorisation, garbage OCSP and TSA requests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select

from ca.authority import CertificateAuthority
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from ca.tsa import TimeStampResponse
from govtrust.audit import AuditRecord
from govtrust.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from govtrust.principal import Principal
from tests.ca.conftest import OPERATOR, USCC, VERIFIER, make_csr, ocsp_query, openssl
from tests.unchanged import unchanged


def _audit_count(authority: CertificateAuthority) -> int:
    with authority.ctx.db.read() as session:
        return session.scalar(select(func.count()).select_from(AuditRecord)) or 0


def _rsa512_csr(tmp_path: Path) -> bytes:
    key = tmp_path / "rsa512.key"
    openssl("genrsa", "-out", str(key), "512")
    out = tmp_path / "rsa512.csr"
    openssl("req", "-new", "-key", str(key), "-subj", "/CN=weak", "-out", str(out))
    return out.read_bytes()


def _weak_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key under test


def _bad_signature_csr() -> bytes:
    der = bytearray(make_csr(pem=False))
    der[-5] ^= 0x01  # inside the signature's INTEGER s
    return bytes(der)


CITIZEN = SubjectSpec(identity="c-rep")


def test_bad_requests_are_refused_and_store_nothing(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: IssueRequest("citizen", CITIZEN, csr=b"\x30\x03\x02\x01"), InvalidArgument, "csr"),
        (
            lambda: IssueRequest(
                "citizen",
                CITIZEN,
                csr=b"-----BEGIN CERTIFICATE REQUEST-----\n"
                b"!!!!\n-----END CERTIFICATE REQUEST-----\n",
            ),
            InvalidArgument,
            "csr",
        ),
        (
            lambda: IssueRequest(
                "citizen",
                CITIZEN,
                csr=b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
            ),
            InvalidArgument,
            "csr",
        ),
        (lambda: IssueRequest("citizen", CITIZEN, csr=b""), InvalidArgument, "csr"),
        (
            lambda: IssueRequest("citizen", CITIZEN, csr=_bad_signature_csr()),
            InvalidArgument,
            "proof of possession",
        ),
        (
            lambda: IssueRequest("citizen", CITIZEN, csr=_rsa512_csr(tmp_path)),
            InvalidArgument,
            "512 bits is too weak",
        ),
        (
            lambda: IssueRequest("citizen", CITIZEN, csr=make_csr(_weak_rsa())),
            InvalidArgument,
            "too weak",
        ),
        (
            lambda: IssueRequest(
                "citizen", CITIZEN, csr=make_csr(ec.generate_private_key(ec.SECP256K1()))
            ),
            InvalidArgument,
            "secp256k1",
        ),
        (
            lambda: IssueRequest("no-such-profile", CITIZEN, csr=make_csr()),
            InvalidArgument,
            "unknown certificate profile",
        ),
        (
            lambda: IssueRequest("citizen", SubjectSpec(identity="c-gone"), csr=make_csr()),
            FailedPrecondition,
            "not active",
        ),
        (
            lambda: IssueRequest("citizen", SubjectSpec(identity="c-low"), csr=make_csr()),
            FailedPrecondition,
            "assurance",
        ),
        (
            lambda: IssueRequest("citizen", SubjectSpec(identity="nobody"), csr=make_csr()),
            NotFound,
            "no citizen",
        ),
        (
            lambda: IssueRequest(
                "legal-person", SubjectSpec(identity="11100000000013338W"), csr=make_csr()
            ),
            FailedPrecondition,
            "not active",
        ),
        (
            lambda: IssueRequest(
                "legal-person", SubjectSpec(identity=USCC), csr=make_csr(), applicant="c-ouyang"
            ),
            FailedPrecondition,
            "certificate.apply",
        ),
        (
            lambda: IssueRequest("citizen", SubjectSpec(seal_id="seal-1"), csr=make_csr()),
            InvalidArgument,
            "subject.identity",
        ),
        (
            lambda: IssueRequest(
                "service", SubjectSpec(service=ServiceSubject("bad id!")), csr=make_csr()
            ),
            InvalidArgument,
            "system_id",
        ),
        (
            lambda: IssueRequest(
                "service",
                SubjectSpec(service=ServiceSubject("ok", ("not a name",))),
                csr=make_csr(),
            ),
            InvalidArgument,
            "dns_names",
        ),
        (
            lambda: IssueRequest("citizen", CITIZEN, csr=make_csr(), validity_days=99999),
            InvalidArgument,
            "validity_days",
        ),
        (
            lambda: IssueRequest("citizen", CITIZEN, generate_key_algorithm="dsa-1024"),
            InvalidArgument,
            "algorithm",
        ),
        (
            lambda: IssueRequest(
                "citizen", CITIZEN, generate_key_algorithm="ec-p256", csr=make_csr()
            ),
            InvalidArgument,
            "not both",
        ),
        (
            lambda: IssueRequest(
                "service",
                SubjectSpec(service=ServiceSubject("x")),
                csr=make_csr(),
                hash_identity_number=True,
            ),
            InvalidArgument,
            "hash_identity_number",
        ),
    ]
    ctx = authority.ctx
    for make_request, error, text in cases:
        with unchanged(ctx.db, ctx.keystore), pytest.raises(error, match=text) as info:
            authority.issue(OPERATOR, make_request())  # type: ignore[arg-type]
        if isinstance(info.value, InvalidArgument):
            assert info.value.violations, info.value
    with unchanged(ctx.db, ctx.keystore), pytest.raises(PermissionDenied):
        authority.issue(VERIFIER, IssueRequest("citizen", CITIZEN, csr=make_csr()))
    seal_maker = Principal("service", "seal", frozenset({"seal-maker"}))
    with unchanged(ctx.db, ctx.keystore), pytest.raises(PermissionDenied):
        authority.issue(seal_maker, IssueRequest("citizen", CITIZEN, csr=make_csr()))


def test_seal_service_may_issue_seal_certificates(authority: CertificateAuthority) -> None:
    seal_maker = Principal("service", "seal", frozenset({"seal-maker"}))
    issued = authority.issue(
        seal_maker, IssueRequest("seal", SubjectSpec(seal_id="seal-1"), csr=make_csr())
    )
    assert issued.certificate.profile == "seal"
    assert issued.certificate.seal_id == "seal-1"
    assert issued.certificate.status == "active"
    assert (
        ocsp_query(authority, issued.certificate)["response_bytes"]["response"]
        .parsed["tbs_response_data"]["responses"][0]["cert_status"]
        .name
        == "good"
    )
    audited = _audit_count(authority)
    suspended = authority.suspend(seal_maker, issued.certificate.id, "挂失")
    assert suspended.status == "suspended"
    stored = authority.get(issued.certificate.id)
    assert stored.status == "suspended" and stored.status_comment == "挂失"
    status = ocsp_query(authority, stored)["response_bytes"]["response"].parsed[
        "tbs_response_data"
    ]["responses"][0]["cert_status"]
    assert status.name == "revoked"
    assert status.chosen["revocation_reason"].native == "certificate_hold"
    assert _audit_count(authority) > audited  # the suspension is audited


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"\x30\x00",
        b"\x30\x80" + b"\x00" * 10,
        b"\x30" * 5000,
        asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": []}}).dump(),
    ],
)
def test_garbage_ocsp_gets_malformed_request(authority: CertificateAuthority, body: bytes) -> None:
    with unchanged(authority.ctx.db, authority.ctx.keystore):
        response = asn1_ocsp.OCSPResponse.load(authority.ocsp(body))
    assert response["response_status"].native == "malformed_request"


def test_ocsp_for_a_foreign_issuer_is_unauthorized(authority: CertificateAuthority) -> None:
    request = asn1_ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    {
                        "req_cert": {
                            "hash_algorithm": {"algorithm": "sha1"},
                            "issuer_name_hash": b"\x01" * 20,
                            "issuer_key_hash": b"\x02" * 20,
                            "serial_number": 5,
                        }
                    }
                ]
            }
        }
    ).dump()
    response = asn1_ocsp.OCSPResponse.load(authority.ocsp(request))
    assert response["response_status"].native == "unauthorized"


@pytest.mark.parametrize(
    ("body", "fail_info"),
    [
        (b"", "bad_data_format"),
        (b"not asn.1 at all", "bad_data_format"),
        (
            tsp.TimeStampReq(
                {
                    "version": "v1",
                    "message_imprint": {
                        "hash_algorithm": {"algorithm": "md5"},
                        "hashed_message": b"\x00" * 16,
                    },
                }
            ).dump(),
            "bad_alg",
        ),
        (
            tsp.TimeStampReq(
                {
                    "version": "v1",
                    "message_imprint": {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "hashed_message": b"\x00" * 5,
                    },
                }
            ).dump(),
            "bad_data_format",
        ),
        (
            tsp.TimeStampReq(
                {
                    "version": "v1",
                    "message_imprint": {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "hashed_message": b"\x00" * 32,
                    },
                    "req_policy": "1.2.3.4",
                }
            ).dump(),
            "unaccepted_policy",
        ),
    ],
)
def test_bad_tsa_requests_are_rejected(
    authority: CertificateAuthority, body: bytes, fail_info: str
) -> None:
    with unchanged(authority.ctx.db, authority.ctx.keystore):
        result = authority.timestamp(body)
    assert not result.granted and result.message
    response = TimeStampResponse.load(result.der)
    assert response["status"]["status"].native == "rejection"
    assert fail_info in response["status"]["fail_info"].native


@pytest.mark.parametrize("count", [1, 2])  # the single-request path and the many-request path
def test_ocsp_with_a_negative_serial_is_malformed(
    authority: CertificateAuthority, caplog: pytest.LogCaptureFixture, count: int
) -> None:
    """A CertID with a negative serial (RFC 5280 allows only positive ones) was internalError
    with a logged traceback (the DER encoder cannot write it back); it is malformedRequest."""
    ca = authority.hierarchy.ca("legal-person")
    items = [
        {
            "req_cert": {
                "hash_algorithm": {"algorithm": algorithm},
                "issuer_name_hash": ca.name_hash[algorithm],
                "issuer_key_hash": ca.key_hash[algorithm],
                "serial_number": -5,
            }
        }
        for algorithm in ("sha1", "sha256")
    ]
    request = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": items[:count]}})
    with unchanged(authority.ctx.db, authority.ctx.keystore):
        response = asn1_ocsp.OCSPResponse.load(authority.ocsp(request.dump()))
    assert response["response_status"].native == "malformed_request"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_csr_with_an_unknown_version_is_invalid_argument() -> None:
    """Found by the fuzzing leg: a CSR whose version is 1 made cryptography raise
    InvalidVersion (not a ValueError), which escaped parse_csr as INTERNAL."""
    from ca.csr import parse_csr

    der = make_csr(pem=False)
    at = der.index(b"\x02\x01\x00")  # the version INTEGER of the CertificationRequestInfo
    version_1 = der[:at] + b"\x02\x01\x01" + der[at + 3 :]
    with pytest.raises(InvalidArgument, match="well-formed PKCS#10"):
        parse_csr(version_1)
