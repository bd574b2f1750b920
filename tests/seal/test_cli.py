"""``govtrust seal …`` drives the lifecycle against a running SealService."""

from __future__ import annotations

from pathlib import Path

import pytest

from govtrust.cli import main
from tests.seal.conftest import FILING, MAKER, REVIEWER, USCC, GrpcHandle, World
from tests.unchanged import unchanged


def test_cli_lifecycle(
    world: World, grpc_seal: GrpcHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str, principal: object = FILING) -> str:
        code = main(
            [
                "seal",
                *argv,
                "--server",
                grpc_seal.address,
                # one argument: a token may start with "-", which argparse would take for a flag
                f"--token={grpc_seal.token(principal)}",  # type: ignore[arg-type]
            ]
        )
        assert code == 0
        return capsys.readouterr().out

    out = run(
        "apply", "--owner-uscc", USCC, "--kind", "contract", "--reason", "desk", principal=world.rep
    )
    seal_id = out.split("\t")[0]
    assert "\tapplied\tcontract\t" in out
    run("review", seal_id, "--approve", principal=REVIEWER)
    run("make", seal_id, principal=MAKER)
    run("file", seal_id)
    assert "\tactive\t" in run("issue", seal_id)
    assert "\tsuspended\t" in run("suspend", seal_id, "--cause", "loss", "--reason", "lost")
    history = run("history", seal_id)
    assert [line.split("\t")[2] for line in history.splitlines()] == [
        "apply",
        "approve",
        "make",
        "file",
        "issue",
        "suspend",
    ]
    run("image", seal_id, "-o", str(tmp_path / "seal.png"))
    assert (tmp_path / "seal.png").read_bytes().startswith(b"\x89PNG")
    assert seal_id in run("list", "--owner-uscc", USCC)
    # a refused step exits non-zero with the status code and reason
    with unchanged(world.db, world.keystore), pytest.raises(SystemExit) as exit_info:
        main(
            [
                "seal",
                "issue",
                seal_id,
                "--server",
                grpc_seal.address,
                f"--token={grpc_seal.token(FILING)}",
            ]
        )
    assert exit_info.value.code == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err
