"""The operator page in headless Chromium (JavaScript off): Chinese and English screenshots for
docs/console.md (``make docs-images``), and "verify now" reaching its result through the step
pages' meta refresh alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ca.authority import authority_for
from govtrust import audit
from govtrust.api.console import operator
from tests.conftest import require_tool
from tests.console.conftest import PASSWORD, ConsoleEnv
from tests.console.test_console_browser import MAX_SCREENSHOT_BYTES, drive
from tests.console.test_console_operator import add_operator
from tests.oidc.conftest import LiveServer
from tests.oidc.test_openid_client import npm_ready

SCRIPT = Path(__file__).with_name("operator_e2e.mjs")


@pytest.mark.slow
def test_chromium_shows_the_operator_page_and_verifies_the_chain(
    console_env: ConsoleEnv,
    tmp_path: Path,
    docs_image: Callable[[str, bytes], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chromium = require_tool("chromium")
    npm_ready()
    env = console_env
    add_operator(env)
    authority = authority_for(env.platform)
    for name in authority.hierarchy.ca_names():
        authority.crl(name)
    monkeypatch.setattr(operator, "VERIFY_STEP", 10)  # several steps, each a meta refresh
    shots = tmp_path / "shots"
    shots.mkdir()
    with LiveServer(env.app(), env.port):
        result = drive(
            {
                "chromium": chromium,
                "base": env.base,
                "password": PASSWORD,
                "login": "operator",
                "shots": str(shots),
            },
            SCRIPT,
        )
    with env.platform.db.read() as session:
        head = audit.head_seq(session)
    assert result["cas"] == len(authority.hierarchy.ca_names())
    assert result["keystore"] == "yes"
    assert result["verify"] == "intact" and int(result["progress"]) == head
    for name in result["shots"]:
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < MAX_SCREENSHOT_BYTES, name
        docs_image(name, data)
