"""Client addresses behind a proxy (hardening issue #13, item 9), end to end on ``govtrust serve``.

By default no proxy is trusted: ``X-Forwarded-For`` from a loopback caller is ignored, so a
local caller cannot rotate the public page's rate-limit key. With ``trusted_proxies`` set, the
limit is keyed on the client address that proxy reports.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.server.serving import running, serve_command, server_database, server_env, settle
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow

PAGE = "/verify/license/1.2.3"  # malformed: 400 once the rate limit let it through


def _statuses(base: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=base, timeout=30) as http:
        return [
            http.get(PAGE, headers={"X-Forwarded-For": address}).status_code
            for address in forwarded_for
        ]


def _env(**extra: str) -> dict[str, str]:
    # two requests per client, then (practically) no refill during the test
    return server_env(GOVTRUST_VERIFY_BURST="2", GOVTRUST_VERIFY_RATE="0.001", **extra)


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(tmp_path: Path) -> None:
    command = serve_command(
        "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0"
    )
    settle(tmp_path / "data")  # the server's first periodic round changes nothing
    with running(command, _env()) as served, server_database(tmp_path / "data") as db:
        # a new X-Forwarded-For on every request is still one client: 127.0.0.1
        rotated = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]
        with unchanged(db):  # the limiter's buckets are the process's, not the database's
            assert _statuses(served.http_base, rotated) == [400, 400, 429, 429]


def test_limits_key_on_the_address_the_trusted_proxy_reports(tmp_path: Path) -> None:
    command = serve_command(
        "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0"
    )
    env = _env(GOVTRUST_TRUSTED_PROXIES="127.0.0.1")
    settle(tmp_path / "data")  # the server's first periodic round changes nothing
    with running(command, env) as served, server_database(tmp_path / "data") as db:
        one, other = "203.0.113.1", "198.51.100.7"
        with unchanged(db):
            assert _statuses(served.http_base, [one, one, one]) == [400, 400, 429]
            # another client behind the same proxy has its own bucket; a spoofed entry to the
            # left of what the proxy appended changes nothing (the rightmost untrusted one counts)
            assert _statuses(served.http_base, [other, f"10.9.9.9, {one}"]) == [400, 429]
