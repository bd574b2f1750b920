"""``govtrust serve`` checks every RPC's declared access rule before the servicer (#13 item 7):
a caller the rule does not admit is refused before its request is read, so a malformed request
and an unknown id get the same PERMISSION_DENIED as a well-formed one."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import grpc
import pytest

from tests.server.pki import Pki, key_pem, pem
from tests.server.serving import running, serve_command, server_database, server_env, settle
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow


def test_the_server_refuses_before_the_servicer(tmp_path: Path) -> None:
    from govtrust.v1 import identity_pb2, seal_pb2

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
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pem(pki.ca),
        private_key=key_pem(pki.client_key),
        certificate_chain=pem(pki.client),
    )
    calls = [
        # no reason: the servicer would answer INVALID_ARGUMENT
        ("/govtrust.v1.SealService/RevokeSealUse", seal_pb2.RevokeSealUseRequest()),
        # an unknown id: the servicer would answer NOT_FOUND
        (
            "/govtrust.v1.IdentityService/RevokeAgent",
            identity_pb2.RevokeAgentRequest(grant_id="agt_nope", reason="x"),
        ),
    ]
    settle(tmp_path / "data")  # the server's first periodic round changes nothing
    with (
        running(command, env) as served,
        grpc.secure_channel(served.grpc_address, credentials) as channel,
        server_database(tmp_path / "data") as db,
    ):
        for method, request in calls:
            with unchanged(db), pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(method, None, None)(request.SerializeToString(), timeout=10)
            call = cast(grpc.Call, info.value)
            assert call.code() == grpc.StatusCode.PERMISSION_DENIED, method
            assert "may not call" in (call.details() or ""), call.details()
