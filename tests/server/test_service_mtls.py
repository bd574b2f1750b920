"""mTLS callers get the roles of the registered service identity their certificate names.

One ``govtrust serve`` subprocess with TLS and required client certificates, whose client CA
file is our own ``service`` CA (and root). The test process shares the server's data directory:
it issues service certificates from that CA, registers and changes service identities and
revokes certificates, and the server sees each change on the caller's next call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.authority import CertificateAuthority, authority_for
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from ca.models import CaCertificate
from govtrust.config import Settings
from govtrust.platform import Platform
from govtrust.principal import SYSTEM
from govtrust.server.wiring import open_wired
from govtrust.v1 import verify_pb2, verify_pb2_grpc
from idp.services import ServiceRegistry, ServiceStatus
from tests.server.pki import Pki, key_pem, pem
from tests.server.serving import Served, running, serve_command, server_env, settle
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow


@dataclass
class World:
    """The running server, the shared platform, and the test PKI the server presents."""

    served: Served
    platform: Platform
    authority: CertificateAuthority
    services: ServiceRegistry
    server_pki: Pki


@dataclass
class Client:
    """A service certificate of ours with its private key."""

    row: CaCertificate
    key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("service-mtls")
    data_dir = root / "data"
    settle(data_dir)  # CRLs published and the chain checkpointed: the first round finds nothing
    platform = open_wired(Settings(data_dir=data_dir), migrate=True)
    try:
        authority = authority_for(platform)
        client_ca = root / "service-ca.pem"
        client_ca.write_bytes(
            b"".join(
                x509.load_der_x509_certificate(i.der).public_bytes(serialization.Encoding.PEM)
                for i in authority.issuing_chain("service")
            )
        )
        server_pki = Pki()
        files = server_pki.write(root / "tls")
        env = server_env(
            GOVTRUST_TLS_CERT=str(files["cert"]),
            GOVTRUST_TLS_KEY=str(files["key"]),
            GOVTRUST_TLS_CLIENT_CA=str(client_ca),
        )
        command = serve_command("--data-dir", str(data_dir), "--grpc-port", "0", "--http-port", "0")
        with running(command, env) as served:
            yield World(served, platform, authority, ServiceRegistry(platform.db), server_pki)
            code, _ = served.stop()
            assert code == 0, served.transcript()
    finally:
        platform.close()


def issue(world: World, system_id: str) -> Client:
    """A service certificate for ``system_id`` from our service CA, from a CSR."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, system_id)]))
        .sign(key, hashes.SHA256())
    )
    request = IssueRequest(
        profile="service",
        subject=SubjectSpec(service=ServiceSubject(system_id)),
        csr=csr.public_bytes(serialization.Encoding.PEM),
    )
    return Client(world.authority.issue(SYSTEM, request).certificate, key)


def verify(world: World, client: Client) -> verify_pb2.VerifyCertificateResponse:
    """VerifyCertificate (needs ``verifier``) over mTLS as ``client``, on a fresh connection."""
    leaf = x509.load_der_x509_certificate(client.row.der)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pem(world.server_pki.ca),
        private_key=key_pem(client.key),
        certificate_chain=pem(leaf),
    )
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.secure_channel(world.served.grpc_address, credentials, options) as channel:
        stub = verify_pb2_grpc.VerifyServiceStub(channel)
        request = verify_pb2.VerifyCertificateRequest(
            certificate=client.row.der, revocation_check=verify_pb2.REVOCATION_CHECK_REGISTRY
        )
        return stub.VerifyCertificate(request, timeout=30)


def refused(world: World, client: Client) -> grpc.Call:
    """The refused call's error; the refusal stored nothing (no row, no key)."""
    with (
        unchanged(world.platform.db, world.platform.keystore),
        pytest.raises(grpc.RpcError) as info,
    ):
        verify(world, client)
    return cast(grpc.Call, info.value)


def test_registered_service_with_verifier_calls_verify_certificate(world: World) -> None:
    client = issue(world, "tax.portal")
    world.services.register(SYSTEM, "tax.portal", ["verifier"])
    response = verify(world, client)
    assert response.report.report_id
    assert response.report.evidence_digest.value
    world.served.wait_stderr('"actor": "service:tax.portal"')


def test_role_changes_take_effect_on_the_next_call(world: World) -> None:
    client = issue(world, "land.registry")
    world.services.register(SYSTEM, "land.registry", ["verifier"])
    assert verify(world, client).report.report_id

    world.services.update_roles(SYSTEM, "land.registry", ["seal-filing"])
    error = refused(world, client)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "service:land.registry may not call VerifyCertificate (needs `verifier`)"
    )

    world.services.update_roles(SYSTEM, "land.registry", ["seal-filing", "verifier"])
    assert verify(world, client).report.report_id


def test_unregistered_service_is_denied(world: World) -> None:
    client = issue(world, "unknown.system")
    error = refused(world, client)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "service:unknown.system may not call VerifyCertificate (needs `verifier`; no service "
        "identity 'unknown.system' is registered; an admin registers it with "
        "'govtrust service register')"
    )


def test_disabled_service_is_denied_until_enabled(world: World) -> None:
    client = issue(world, "old.portal")
    world.services.register(SYSTEM, "old.portal", ["verifier"])
    assert verify(world, client).report.report_id

    world.services.set_status(SYSTEM, "old.portal", ServiceStatus.DISABLED, "contract ended")
    error = refused(world, client)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "service:old.portal may not call VerifyCertificate "
        "(needs `verifier`; the service identity 'old.portal' is disabled)"
    )

    world.services.set_status(SYSTEM, "old.portal", ServiceStatus.ACTIVE, "renewed")
    assert verify(world, client).report.report_id


def test_revoked_or_suspended_certificate_is_refused(world: World) -> None:
    revoked = issue(world, "bank.gateway")
    suspended = issue(world, "bank.gateway")
    world.services.register(SYSTEM, "bank.gateway", ["verifier"])
    assert verify(world, revoked).report.report_id
    assert verify(world, suspended).report.report_id

    world.authority.revoke(SYSTEM, revoked.row.id, reason="keyCompromise")
    world.authority.suspend(SYSTEM, suspended.row.id, comment="investigation")
    # republish the CRLs now: the server's periodic CA refresh would otherwise do it at any
    # moment, perhaps while a refused call below is checked for changing nothing
    world.authority.refresh()
    error = refused(world, revoked)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == f"the client certificate (serial {revoked.row.serial}) is revoked"
    error = refused(world, suspended)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == (
        f"the client certificate (serial {suspended.row.serial}) is suspended"
    )

    world.authority.resume(SYSTEM, suspended.row.id)
    assert verify(world, suspended).report.report_id
    # the identity is untouched: a new certificate for it works
    assert verify(world, issue(world, "bank.gateway")).report.report_id
