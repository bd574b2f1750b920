"""``govtrust serve`` with TLS and required client certificates (mTLS), end to end."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import cast

import grpc
import httpx
import pytest

from govtrust.v1 import verify_pb2
from tests.server.pki import Pki, key_pem, pem
from tests.server.serving import running, serve_command, server_database, server_env, settle
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow


def _channel(pki: Pki, address: str, *, with_client_cert: bool) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pem(pki.ca),
        private_key=key_pem(pki.client_key) if with_client_cert else None,
        certificate_chain=pem(pki.client) if with_client_cert else None,
    )
    return grpc.secure_channel(address, credentials)


def test_mtls_server(tmp_path: Path) -> None:
    pki = Pki()
    files = pki.write(tmp_path / "tls")
    env = server_env(
        GOVTRUST_TLS_CERT=str(files["cert"]),
        GOVTRUST_TLS_KEY=str(files["key"]),
        GOVTRUST_TLS_CLIENT_CA=str(files["ca"]),
    )
    command = serve_command(
        "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0"
    )
    settle(tmp_path / "data")  # the server's first periodic round changes nothing
    with running(command, env) as served, server_database(tmp_path / "data") as db:
        banner = "\n".join(served.stdout.lines)
        assert "TLS, client certificate required" in banner
        assert "every local caller is admin" not in banner
        assert served.http_base.startswith("https://")

        descriptor = verify_pb2.DESCRIPTOR.services_by_name["VerifyService"].methods[0]
        method = f"/govtrust.v1.VerifyService/{descriptor.name}"
        with (
            _channel(pki, served.grpc_address, with_client_cert=True) as channel,
            unchanged(db),
            pytest.raises(grpc.RpcError) as info,
        ):
            channel.unary_unary(method, None, None)(b"", timeout=10)
        assert (
            cast(grpc.Call, info.value).code() == grpc.StatusCode.PERMISSION_DENIED
        )  # no verifier role
        served.wait_stderr('"actor": "service:licence-system"')

        with (
            _channel(pki, served.grpc_address, with_client_cert=False) as channel,
            unchanged(db),
            pytest.raises(grpc.RpcError) as info,
        ):
            channel.unary_unary(method, None, None)(b"", timeout=10)
        assert cast(grpc.Call, info.value).code() == grpc.StatusCode.UNAVAILABLE

        trust = ssl.create_default_context(cafile=str(files["ca"]))
        response = httpx.get(f"{served.http_base}/healthz", verify=trust, timeout=10)
        assert response.json() == {"status": "ok"}

        code, _ = served.stop()
        assert code == 0, served.transcript()
