"""Each gRPC service end to end with real credentials (issue #23 item 5).

One ``govtrust serve`` with TLS and required client certificates of our own ``service`` CA.
For every service (Certificate, Identity, Seal, License, Verify) one role-gated call is made

* with a real bearer token: an OIDC client holding the role gets a client_credentials token
  from the server's own ``/oidc/token``; the TLS transport presents a certificate of an
  unregistered service (no roles), so only the token can admit the call;
* with an mTLS service identity: a service certificate from our service CA for a service
  identity registered with the role (no token).

Each call is answered by the servicer (the role reached it); the same call with a credential
lacking the role is refused by the gate (PERMISSION_DENIED "may not call").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest

from govtrust.v1 import (
    certificate_pb2,
    certificate_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    license_pb2,
    license_pb2_grpc,
    seal_pb2,
    seal_pb2_grpc,
    verify_pb2,
    verify_pb2_grpc,
)
from tests.idp.helpers import resident_id
from tests.server.real import Metadata, RealServer, bearer, real_server

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    """One role-gated call of a service and what its answer must show."""

    role: str
    stub: Callable[[grpc.Channel], Any]
    method: str
    request: Callable[[RealServer], Any]
    check: Callable[[Any], bool] | None  # None: the servicer answers NOT_FOUND
    lacking: str  # a role the call's rule does not list


def _leaf_der(server: RealServer) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_pem, _ = server.service_certificate("verified.system", None)
    return x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)


_citizens = iter(range(100, 200))

CASES = {
    "CertificateService": Case(
        "ca-operator",
        certificate_pb2_grpc.CertificateServiceStub,
        "ListCertificates",
        lambda _s: certificate_pb2.ListCertificatesRequest(),
        lambda r: len(r.certificates) > 0,  # the service certificates issued for the test
        "licence-issuer:FZ",
    ),
    "IdentityService": Case(
        "identity-registrar",
        identity_pb2_grpc.IdentityServiceStub,
        "RegisterCitizen",
        lambda _s: identity_pb2.RegisterCitizenRequest(
            name="真实凭据", id_number=resident_id(next(_citizens))
        ),
        lambda r: r.citizen.id.startswith("cit"),
        "verifier",
    ),
    "SealService": Case(
        "seal-reviewer",
        seal_pb2_grpc.SealServiceStub,
        "ReviewSeal",
        lambda _s: seal_pb2.ReviewSealRequest(
            seal_id="0000000000000000", decision=seal_pb2.REVIEW_DECISION_APPROVE, reason="ok"
        ),
        None,
        "seal-maker",
    ),
    "LicenseService": Case(
        "licence-issuer:FZ",
        license_pb2_grpc.LicenseServiceStub,
        "ListLicenses",
        lambda _s: license_pb2.ListLicensesRequest(issuer_code="FZ"),
        lambda r: list(r.licenses) == [],
        "seal-reviewer",
    ),
    "VerifyService": Case(
        "verifier",
        verify_pb2_grpc.VerifyServiceStub,
        "VerifyCertificate",
        lambda s: verify_pb2.VerifyCertificateRequest(certificate=_leaf_der(s)),
        lambda r: bool(r.report.report_id),
        "ca-operator",
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    with real_server(tmp_path_factory.mktemp("real-credentials"), mtls=True) as real:
        yield real


@pytest.fixture(scope="module")
def transport(server: RealServer) -> tuple[bytes, bytes]:
    """The client certificate of an unregistered service: it authenticates, holds no role."""
    return server.service_certificate("transport.only", None)


def _call(server: RealServer, case: Case, client: tuple[bytes, bytes], metadata: Metadata) -> Any:
    with server.channel(client) as channel:
        method = getattr(case.stub(channel), case.method)
        return method(case.request(server), metadata=metadata, timeout=60)


def _answered(server: RealServer, case: Case, client: tuple[bytes, bytes], md: Metadata) -> None:
    if case.check is None:
        with pytest.raises(grpc.RpcError) as info:
            _call(server, case, client, md)
        error = cast(grpc.Call, info.value)
        assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    else:
        assert case.check(_call(server, case, client, md))


def _refused(server: RealServer, case: Case, client: tuple[bytes, bytes], md: Metadata) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(server, case, client, md)
    error = cast(grpc.Call, info.value)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"may not call {case.method} " in (error.details() or "")


@pytest.mark.parametrize("service", list(CASES))
def test_a_real_oidc_token_admits_its_roles(
    server: RealServer, transport: tuple[bytes, bytes], service: str
) -> None:
    case = CASES[service]
    _refused(server, case, transport, ())  # the transport certificate alone holds no role
    token = server.token([case.role], name=f"real {service}")
    _answered(server, case, transport, bearer(token))
    server.served.wait_stderr(f'"method": "/govtrust.v1.{service}/{case.method}"')
    _refused(server, case, transport, bearer(server.token([case.lacking], name="lacking")))


@pytest.mark.parametrize("service", list(CASES))
def test_an_mtls_service_identity_admits_its_roles(server: RealServer, service: str) -> None:
    case = CASES[service]
    system_id = f"{service.lower()}.caller"
    with_role = server.service_certificate(system_id, [case.role])
    _answered(server, case, with_role, ())
    server.served.wait_stderr(f'"actor": "service:{system_id}"')
    without = server.service_certificate(f"{service.lower()}.other", [case.lacking])
    _refused(server, case, without, ())
