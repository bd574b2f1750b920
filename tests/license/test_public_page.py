"""The public verification page in a real browser: headless Chromium against a uvicorn server.

A department with an ACTIVE official seal issues a valid and a revoked business licence; the
routes are served over HTTP on a free port (the licences' status URIs point there) and
Chromium (no JavaScript needed: the page has none) loads each page. The test reads the DOM
Chromium built, in Chinese and in English, and saves a screenshot of each page
(``licence-verify-valid.png``, ``licence-verify-revoked.png``; shown by docs/licence-verify.md,
refreshed there by ``make docs-images``).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from govtrust.api.license_http import make_router
from govtrust.http.errors import install_error_handlers
from govtrust.http.ratelimit import RateLimiter
from tests.conftest import require_tool
from tests.license.test_http import (
    CITIZEN_ID,
    DEPT,
    ISSUER_NAME,
    SECRET_FIELDS,
    Licences,
    issue_all,
    make_licences,
)
from tests.seal.conftest import USCC, World, free_port, world  # noqa: F401 - fixture

MAX_SCREENSHOT_BYTES = 300 * 1024


@pytest.fixture
def served(world: World, tmp_path: Path) -> Iterator[tuple[Licences, str]]:  # noqa: F811
    """Licences in every state and the routes served by uvicorn at their base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lic = make_licences(world, base)
    issue_all(lic)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(make_router(lambda: lic.runtime, limiter=RateLimiter(rate=50, burst=50)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="licence-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield lic, base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with a private profile; its standard output."""
    binary = require_tool("chromium")
    profile = tmp_path / "chromium-profile"
    command = [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--lang=zh-CN",
        "--accept-lang=zh-CN,zh",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom_text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def screenshot(tmp_path: Path, url: str, name: str) -> bytes:
    """A PNG of the page at ``url`` (a desktop-sized window), checked; saved as ``name``."""
    shot = tmp_path / name
    chromium(tmp_path, "--window-size=900,1300", f"--screenshot={shot}", url)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < MAX_SCREENSHOT_BYTES, len(data)
    return data


def test_chromium_shows_a_valid_and_a_revoked_licence(
    served: tuple[Licences, str], tmp_path: Path, docs_image: Callable[[str, bytes], Path]
) -> None:
    lic, base = served
    valid_url = f"{base}/verify/license/{lic.ids['valid']}"
    revoked_url = f"{base}/verify/license/{lic.ids['revoked']}"

    valid = chromium(tmp_path, "--dump-dom", valid_url)
    assert '<html lang="zh-CN">' in valid and "<script" not in valid
    text = dom_text(valid)
    assert "该证照真实有效" in text and 'data-status="valid"' in valid
    assert lic.ids["valid"] in text and ISSUER_NAME in text and USCC in text
    assert "签名验证通过" in text and "福州示例科技有限公司" in text
    for secret in SECRET_FIELDS:
        assert secret not in valid

    revoked = chromium(tmp_path, "--dump-dom", revoked_url)
    text = dom_text(revoked)
    assert 'data-status="revoked"' in revoked and "已注销" in text
    assert "该证照真实，但当前不可用：已注销" in text and lic.ids["revoked"] in text
    assert "签名验证通过" in text and "REVOKED" in text
    for secret in SECRET_FIELDS:
        assert secret not in revoked

    english = dom_text(chromium(tmp_path, "--dump-dom", valid_url + "?lang=en"))
    assert "This licence is genuine and valid" in english and "Valid" in english
    revoked_en = dom_text(chromium(tmp_path, "--dump-dom", revoked_url + "?lang=en"))
    assert "This licence is genuine but not in force: Revoked" in revoked_en

    citizen = chromium(tmp_path, "--dump-dom", f"{base}/verify/license/{lic.ids['citizen']}")
    assert "王*" in citizen and "王五" not in citizen and CITIZEN_ID not in citizen

    for url, state in ((valid_url, "valid"), (revoked_url, "revoked")):
        name = f"licence-verify-{state}.png"
        docs_image(name, screenshot(tmp_path, url, name))


def test_status_list_served_over_http_is_what_licences_point_to(
    served: tuple[Licences, str],
) -> None:
    import httpx

    from license.status_list import LicenceStatus, verify_status_list

    lic, base = served
    stored = lic.service.stored(lic.ids["valid"])
    from license.signed_data import verify_licence

    uri = verify_licence(stored.signed_data, lic.roots).metadata.status_uri
    assert uri == f"{base}/licence/status/{USCC}"
    first = httpx.get(uri, timeout=30)
    assert first.status_code == 200
    index = stored.row.status_index
    assert verify_status_list(first.text, lic.roots, uri=uri).status(index) is LicenceStatus.VALID
    lic.service.suspend(DEPT, lic.ids["valid"], "核查中")
    second = httpx.get(uri, headers={"If-None-Match": first.headers["etag"]}, timeout=30)
    assert second.status_code == 200
    listed = verify_status_list(second.text, lic.roots, uri=uri)
    assert listed.status(index) is LicenceStatus.SUSPENDED
    page = httpx.get(f"{base}/verify/license/{lic.ids['valid']}?lang=en", timeout=30)
    assert 'data-status="suspended"' in page.text and "Suspended" in page.text
