"""A real ``govtrust serve`` over TLS and real credentials for it (role-matrix and real-parts
tests): bearer tokens our own OIDC provider issues (client_credentials at the server's
``/oidc/token``) and service certificates from our own ``service`` CA for registered service
identities (mTLS).

The test process opens the same data directory as the server (as tests/server/
test_service_mtls.py does): it registers OIDC clients and service identities and issues
certificates there, and the server sees them on the next call.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import descriptor as gdescriptor

from ca.authority import CertificateAuthority, authority_for
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from govtrust.config import Settings
from govtrust.platform import Platform
from govtrust.principal import LOCAL_ADMIN, SYSTEM, Principal
from govtrust.server.wiring import open_wired
from idp.oidc.factory import provider_for
from idp.services import ServiceRegistry
from tests.server.pki import Pki, key_pem, pem
from tests.server.serving import Served, running, serve_command, server_env

Metadata = tuple[tuple[str, str], ...]


@dataclass
class RealServer:
    """A running TLS server, the platform it shares with the test, and credential helpers."""

    served: Served
    platform: Platform
    authority: CertificateAuthority
    pki: Pki
    trust: ssl.SSLContext

    def token(self, roles: Sequence[str], name: str = "matrix") -> str:
        """A real access token: an OIDC client holding ``roles`` (registered by an admin)
        asks the server's token endpoint with client_credentials."""
        registered = provider_for(self.platform).clients.register(
            LOCAL_ADMIN, client_name=name, grant_types=["client_credentials"], roles=list(roles)
        )
        response = httpx.post(
            f"{self.served.http_base}/oidc/token",
            data={"grant_type": "client_credentials"},
            auth=(registered.client.client_id, registered.client_secret or ""),
            verify=self.trust,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer"
        return str(body["access_token"])

    def citizen_token(self, name: str, id_number: str, login: str = "zhangsan") -> str:
        """A real access token of a citizen: registered in the registry with a password, it
        logs in (as ``login``, the name tests.oidc.flows uses) through the server's own
        authorization-code flow (PKCE, consent)."""
        from fastapi.testclient import TestClient

        from idp.registry import IdentityRegistry
        from tests.oidc.conftest import PASSWORD, REDIRECT
        from tests.oidc.flows import full_login

        registrar = Principal("user", "registrar", frozenset({"identity-registrar"}))
        registry = IdentityRegistry.open(self.platform.db, self.platform.master_key)
        citizen = registry.register_citizen(registrar, name=name, id_number=id_number)
        provider = provider_for(self.platform)
        provider.passwords.set_password(
            registrar, identity_id=citizen.id, login_name=login, password=PASSWORD
        )
        registered = provider.clients.register(
            LOCAL_ADMIN, client_name="matrix portal", redirect_uris=[REDIRECT]
        )
        with httpx.Client(base_url=self.served.http_base, verify=self.trust, timeout=30) as http:
            tokens = full_login(
                cast(TestClient, http),
                registered.client.client_id,
                registered.client_secret,
            )
        return str(tokens["access_token"])

    def service_certificate(
        self, system_id: str, roles: Sequence[str] | None
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a service certificate from our service CA, from a CSR;
        ``roles`` registers the service identity with them (None: left unregistered)."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, system_id)]))
            .sign(key, hashes.SHA256())
        )
        issued = self.authority.issue(
            SYSTEM,
            IssueRequest(
                profile="service",
                subject=SubjectSpec(service=ServiceSubject(system_id)),
                csr=csr.public_bytes(serialization.Encoding.PEM),
            ),
        )
        if roles is not None:
            ServiceRegistry(self.platform.db).register(SYSTEM, system_id, list(roles))
        leaf = x509.load_der_x509_certificate(issued.certificate.der)
        return pem(leaf), key_pem(key)

    def channel(self, client: tuple[bytes, bytes] | None = None) -> grpc.Channel:
        """A TLS channel to the server, presenting ``client`` (cert, key PEM) when given."""
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pem(self.pki.ca),
            private_key=client[1] if client else None,
            certificate_chain=client[0] if client else None,
        )
        options = [("grpc.use_local_subchannel_pool", 1)]
        return grpc.secure_channel(self.served.grpc_address, credentials, options)


def bearer(token: str) -> Metadata:
    """The call metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)


@contextlib.contextmanager
def real_server(root: Path, *, mtls: bool) -> Iterator[RealServer]:
    """``govtrust serve`` with TLS on ``root/data``; ``mtls`` requires client certificates of
    our own service CA (else callers authenticate with bearer tokens or not at all)."""
    data_dir = root / "data"
    platform = open_wired(Settings(data_dir=data_dir), migrate=True)
    try:
        authority = authority_for(platform)
        pki = Pki()
        files = pki.write(root / "tls")
        extra = {"GOVTRUST_TLS_CERT": str(files["cert"]), "GOVTRUST_TLS_KEY": str(files["key"])}
        if mtls:
            client_ca = root / "service-ca.pem"
            client_ca.write_bytes(
                b"".join(
                    pem(x509.load_der_x509_certificate(issuer.der))
                    for issuer in authority.issuing_chain("service")
                )
            )
            extra["GOVTRUST_TLS_CLIENT_CA"] = str(client_ca)
        command = serve_command("--data-dir", str(data_dir), "--grpc-port", "0", "--http-port", "0")
        with running(command, server_env(**extra)) as served:
            trust = ssl.create_default_context(cafile=str(files["ca"]))
            yield RealServer(served, platform, authority, pki, trust)
            code, _ = served.stop()
            assert code == 0, served.transcript()
    finally:
        platform.close()


def call_raw(
    channel: grpc.Channel,
    method: gdescriptor.MethodDescriptor,
    request: bytes,
    metadata: Metadata,
    timeout: float = 30,
) -> object:
    """Call ``method`` with a serialised request (any streaming shape); the raw response."""
    name = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming and method.server_streaming:
        return list(
            channel.stream_stream(name, None, None)(
                iter([request]), metadata=metadata, timeout=timeout
            )
        )
    if method.client_streaming:
        return channel.stream_unary(name, None, None)(
            iter([request]), metadata=metadata, timeout=timeout
        )
    if method.server_streaming:
        return list(
            channel.unary_stream(name, None, None)(request, metadata=metadata, timeout=timeout)
        )
    return channel.unary_unary(name, None, None)(request, metadata=metadata, timeout=timeout)
