"""``govtrust license import`` as a subprocess (both backends): killed with SIGKILL mid-way (the
whole process group: the command and its worker processes), run again, and every source row is
issued exactly once — one licence and one source key per row, the results file one line per
row; then a bad row in the same file is refused with its reason and the rest stays issued."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from govtrust.config import Settings
from govtrust.server.wiring import open_wired
from license import catalogue
from license.models import LicenceRow, LicenceSourceRow
from tests.license.conftest import COMPANY, ISSUER
from tests.license.test_catalogue import GOOD_BL
from tests.license.test_cli import REPO, _run, data_dir

__all__ = ["data_dir"]  # the fixture, shared with test_cli

ROWS = 40


def _write(path: Path, rows: int, extra: list[dict[str, str]] = ()) -> None:  # type: ignore[assignment]
    names = ["source_key", "type_code", "holder_code_type", "holder_code", "valid_from",
             *GOOD_BL]  # fmt: skip
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, names)
        writer.writeheader()
        for i in range(rows):
            writer.writerow(
                {
                    "source_key": f"旧证-{i:05d}",
                    "type_code": catalogue.BUSINESS_LICENCE_CODE,
                    "holder_code_type": "001",
                    "holder_code": COMPANY,
                    "valid_from": "2015-06-01",
                    **GOOD_BL,
                }
            )
        writer.writerows(extra)


def _counts(directory: Path, database_url: str) -> tuple[int, int, int]:
    platform = open_wired(Settings(data_dir=directory, database_url=database_url))
    try:
        with platform.db.read() as session:
            return (
                session.scalar(select(func.count()).select_from(LicenceRow)) or 0,
                session.scalar(select(func.count()).select_from(LicenceSourceRow)) or 0,
                session.scalar(
                    select(func.count(func.distinct(LicenceSourceRow.identifier)))
                ) or 0,
            )  # fmt: skip
    finally:
        platform.close()


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines()]


def test_import_killed_and_resumed_issues_every_row_exactly_once(
    data_dir: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    directory, env = data_dir
    seeded = _run(directory, env, "types", "--seed")
    assert seeded.returncode == 0, seeded.stderr
    source, out = tmp_path / "register.csv", tmp_path / "results.jsonl"
    _write(source, ROWS)
    command = [
        sys.executable, "-m", "govtrust", "license", "import", str(source), "--out", str(out),
        "--issuer", ISSUER, "--streams", "2", "--chunk", "4", "--data-dir", str(directory),
    ]  # fmt: skip
    first = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
        if out.exists() and out.read_text(encoding="utf-8").count("\n") >= 8:
            break
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()
    os.killpg(first.pid, signal.SIGKILL)  # the command and its workers, mid-transaction maybe
    first.wait(timeout=30)
    written = len(_lines(out)) if out.read_text(encoding="utf-8").endswith("\n") else None
    licences, keys, _ = _counts(directory, env["GOVTRUST_DATABASE_URL"])
    assert 8 <= keys < ROWS and licences == keys, (licences, keys, written)

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["rows"] == ROWS and summary["refused"] == 0
    assert summary["issued"] + summary["existing"] == ROWS
    assert "import [" in second.stderr and "100%" in second.stderr  # the progress bar
    lines = _lines(out)
    assert sorted(int(str(x["line"])) for x in lines) == list(range(2, ROWS + 2))
    assert {x["status"] for x in lines} <= {"issued", "existing"}
    identifiers = [x["identifier"] for x in lines]
    assert len(set(identifiers)) == ROWS
    assert _counts(directory, env["GOVTRUST_DATABASE_URL"]) == (ROWS, ROWS, ROWS)

    # The file again, now with a bad row and a repeated key: nothing reissued, each refused.
    _write(
        source,
        ROWS,
        [
            {"source_key": "坏-1", "type_code": catalogue.BUSINESS_LICENCE_CODE,
             "holder_code_type": "001", "holder_code": "11100000000013338W", **GOOD_BL},
            {"source_key": "旧证-00003", "type_code": catalogue.BUSINESS_LICENCE_CODE,
             "holder_code_type": "001", "holder_code": COMPANY, **GOOD_BL},
        ],
    )  # fmt: skip
    again = tmp_path / "again.jsonl"
    third = subprocess.run(
        [*command[:-6], "--streams", "1", "--out", str(again), *command[-2:]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert third.returncode == 1, third.stderr
    assert json.loads(third.stdout)["existing"] == ROWS
    tail = sorted(_lines(again), key=lambda x: int(str(x["line"])))[-2:]
    assert [(x["status"], x["reason"]) for x in tail] == [
        ("refused", "HOLDER_NOT_FOUND"),
        ("refused", "DUPLICATE_SOURCE_KEY"),
    ]
    assert _counts(directory, env["GOVTRUST_DATABASE_URL"]) == (ROWS, ROWS, ROWS)

    # A file whose header names an unknown column is refused whole: exit 2, nothing issued.
    bad = tmp_path / "bad.csv"
    bad.write_text("source_key,type_code,holder_code_type,holder_code,colour\n" "k,t,001,c,red\n",
                   encoding="utf-8")  # fmt: skip
    refused = subprocess.run(
        [*command[:3], "license", "import", str(bad), *command[-2:]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "unknown column 'colour'" in refused.stderr
    assert _counts(directory, env["GOVTRUST_DATABASE_URL"]) == (ROWS, ROWS, ROWS)
