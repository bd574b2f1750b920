"""The certified RP library openid-client (npm) against a running govtrust (uvicorn, real port)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.oidc.conftest import LOGOUT_REDIRECT, PASSWORD, REDIRECT, LiveServer, OidcEnv

RP_DIR = Path(__file__).parent / "rp"


def npm_ready() -> None:
    """Install the locked node packages into tests/oidc/rp unless a finished install is there.

    Under an exclusive lock on tests/oidc/rp itself, as the xdist workers share the folder:
    ``npm ci`` first empties node_modules, so a second worker must neither run it again nor
    use the half-filled folder. The marker is written last, so an interrupted install reruns.
    """
    require_tool("node")
    npm = require_tool("npm")
    done = RP_DIR / "node_modules" / ".govtrust-installed"
    folder = os.open(RP_DIR, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if not done.exists():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=RP_DIR, check=True, timeout=600
            )
            done.touch()
    finally:
        os.close(folder)  # releases the lock


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_openid_client_full_flow(live_server: tuple[OidcEnv, LiveServer], alg: str) -> None:
    npm_ready()
    env, server = live_server
    client_id, secret = env.register_client(
        id_token_signing_alg=alg, client_name="openid-client RP"
    )
    config = {
        "issuer": server.url,
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uri": REDIRECT,
        "post_logout_redirect_uri": LOGOUT_REDIRECT,
        "login_name": "zhangsan",
        "password": PASSWORD,
        "id_token_alg": alg,
    }
    done = subprocess.run(
        ["node", "rp_flow.mjs", json.dumps(config)],
        cwd=RP_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["issuer"] == server.url
    assert result["callback_has_code"]
    claims = result["id_token_claims"]
    assert claims["sub"] == env.citizen_id and claims["aud"] == client_id
    assert claims["acr"].startswith("urn:govtrust:loa:") and claims["amr"] == ["pwd"]
    assert result["userinfo"]["name"] == "张三"
    assert result["userinfo"]["email"] == "zhangsan@example.cn"
    assert result["refreshed"] == {
        "rotated": True,
        "has_access_token": True,
        "id_token_sub": env.citizen_id,
    }
    assert result["introspection_active"] is True
    assert result["revoked_refresh_active"] is False
    assert result["reuse_error"] == "invalid_grant"
    assert result["logout_status"] == 303
    assert result["logout_location"] == f"{LOGOUT_REDIRECT}?state=logout-state"
    assert result["after_logout"] == "login_required"
