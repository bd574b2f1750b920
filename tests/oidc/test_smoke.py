"""A first end-to-end pass through the code flow in-process."""

from __future__ import annotations

from tests.oidc.conftest import OidcEnv
from tests.oidc.flows import full_login


def test_code_flow_smoke(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        assert {"access_token", "id_token", "refresh_token"} <= tokens.keys()
        info = http.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert info.status_code == 200, info.text
        assert info.json()["name"] == "张三"
