"""Headless Chromium logs in through the real login page: password, then certificate login."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import require_tool
from tests.oidc.conftest import (
    PASSWORD,
    LiveServer,
    OidcEnv,
    pem,
    pkce_pair,
    query_of,
)
from tests.oidc.test_openid_client import RP_DIR, npm_ready


@pytest.mark.slow
def test_chromium_password_then_certificate_login(
    live_server: tuple[OidcEnv, LiveServer],
) -> None:
    chromium = require_tool("chromium")
    npm_ready()
    env, server = live_server
    redirect = f"{server.url}/rp/callback"
    client_id, secret = env.register_client(client_name="浏览器测试应用", redirect_uris=[redirect])
    key, cert = env.ca.citizen_cert("11010519491231002X", "张三")
    verifier, challenge = pkce_pair()

    def url(**extra: str) -> str:
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "scope": "openid profile",
            "state": "browser",
            "nonce": "n1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return f"{server.url}/oidc/authorize?{urlencode(params)}"

    config = {
        "chromium": chromium,
        "redirect_uri": redirect,
        "login_name": "zhangsan",
        "password": PASSWORD,
        "password_url": url(),
        "certificate_url": url(prompt="login", acr_values="urn:govtrust:loa:3"),
        "certificate_pem": pem(cert),
        "certificate_key_pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }
    done = subprocess.run(
        ["node", "browser_login.mjs", json.dumps(config)],
        cwd=RP_DIR,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "统一身份认证" in result["login_title"]
    for landing in (result["password_landing"], result["certificate_landing"]):
        assert landing.startswith(redirect)
        params = query_of(landing)
        assert params["code"] and params["state"] == "browser"
    cookie = result["session_cookie"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    # The certificate code is worth an loa:3 ID token.
    from jose import jwt

    with env.http() as http:
        code = query_of(result["certificate_landing"])["code"]
        tokens = http.post(
            "/oidc/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "code_verifier": verifier,
            },
            auth=(client_id, secret or ""),
        ).json()
    claims = jwt.get_unverified_claims(tokens["id_token"])
    assert claims["acr"] == "urn:govtrust:loa:3" and claims["amr"] == ["x509"]
