"""``govtrust oidc client add|list|remove`` and ``govtrust oidc key rotate`` on a data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from govtrust.cli import main


def test_client_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["init", "--data-dir", data]) == 0  # only init and serve create an instance
    capsys.readouterr()
    assert (
        main(
            [
                "oidc",
                "client",
                "add",
                "Portal 门户",
                "--redirect-uri",
                "https://portal.example/cb",
                "--client-id",
                "portal",
                "--data-dir",
                data,
            ]
        )
        == 0
    )
    added = json.loads(capsys.readouterr().out)
    assert added["client_id"] == "portal" and len(added["client_secret"]) >= 40
    assert (
        main(
            [
                "oidc",
                "client",
                "add",
                "SPA",
                "--public",
                "--redirect-uri",
                "https://spa.example/cb",
                "--data-dir",
                data,
            ]
        )
        == 0
    )
    assert "client_secret" not in json.loads(capsys.readouterr().out)
    assert main(["oidc", "client", "list", "--json", "--data-dir", data]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {c["client_name"] for c in listed} == {"Portal 门户", "SPA"}
    assert all("client_secret" not in c for c in listed)
    # Invalid input: a clear error, exit 1, nothing registered.
    assert (
        main(
            [
                "oidc",
                "client",
                "add",
                "Bad",
                "--redirect-uri",
                "http://evil.example/cb",
                "--data-dir",
                data,
            ]
        )
        == 1
    )
    assert "http is allowed only for loopback" in capsys.readouterr().err
    assert main(["oidc", "key", "rotate", "--alg", "RS256", "--data-dir", data]) == 0
    assert "new RS256 key" in capsys.readouterr().out
    assert main(["oidc", "client", "remove", "portal", "--data-dir", data]) == 0
    assert main(["oidc", "client", "remove", "portal", "--data-dir", data]) == 1
    assert "does not exist" in capsys.readouterr().err
