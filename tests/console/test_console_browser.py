"""The console end to end in headless Chromium (playwright-core from the project's locked npm
packages in tests/oidc/rp, driving Debian's chromium with JavaScript off): apply → approve →
make → file → issue → grant use to an agent → the agent seals a PDF over gRPC (its own OIDC
token) → the representative sees the use → reports the loss → the maker re-makes. The
screenshots it takes are the pictures of docs/console.md (``make docs-images``)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from govtrust.v1 import seal_pb2
from seal.runtime import runtime_for
from seal.types import SealStatus
from tests.conftest import require_tool
from tests.console.conftest import (
    PASSWORD,
    ConsoleEnv,
    citizen_token,
    seal_grpc,
)
from tests.oidc.conftest import LiveServer
from tests.oidc.test_openid_client import RP_DIR, npm_ready
from tests.seal.conftest import one_page_pdf

SCRIPT = Path(__file__).with_name("console_e2e.mjs")
MAX_SCREENSHOT_BYTES = 600 * 1024


def drive(config: dict[str, Any], script: Path = SCRIPT) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(script), json.dumps(config)],
        cwd=RP_DIR,
        env={**os.environ, "RP_DIR": str(RP_DIR)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_chromium_drives_a_seal_from_application_to_remaking(
    console_env: ConsoleEnv, tmp_path: Path, docs_image: Callable[[str, bytes], Path]
) -> None:
    chromium = require_tool("chromium")
    npm_ready()
    env = console_env
    shots = tmp_path / "shots"
    shots.mkdir()
    base_config = {
        "chromium": chromium,
        "base": env.base,
        "password": PASSWORD,
        "shots": str(shots),
    }
    service = runtime_for(env.platform).service
    with LiveServer(env.app(), env.port):
        first = drive(
            {
                **base_config,
                "phase": "a",
                "seal_name": "福州示例有限公司合同专用章",
                "agent_number": env.agent_number,
            }
        )
        seal_id = first["seal_id"]
        assert first["preview_shown"] and first["applied_status"] == "applied"
        assert first["in_review_queue"]
        assert first["reviewer_sees_make"] == 0 and first["reviewer_sees_make_after"] == 0
        assert first["approved_status"] == "approved" and first["made_status"] == "made"
        assert first["issued_status"] == "active" and first["grants"] == 1

        token = citizen_token(env, "agent")
        with seal_grpc(env.platform) as stub:
            sealed = stub.SealPdf(
                seal_pb2.SealPdfRequest(
                    seal_id=seal_id, pdf=one_page_pdf(), document_kind="contract"
                ),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=120,
            )
        assert sealed.sealed_pdf.startswith(b"%PDF")

        second = drive({**base_config, "phase": "b", "seal_id": seal_id})
        assert second["uses"] == 1
        assert second["suspended_status"] == "suspended"
        assert second["new_seal_id"] != seal_id and second["new_status"] == "made"
    old = service.get(seal_id)
    assert old.status is SealStatus.REVOKED and old.replaced_by_seal_id == second["new_seal_id"]
    for name in first["shots"] + second["shots"]:
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < MAX_SCREENSHOT_BYTES, name
        docs_image(name, data)
