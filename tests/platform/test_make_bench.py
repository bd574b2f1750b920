"""`make bench` runs every bench even when one misses its target, repeats the misses at the
end and exits non-zero (the venv and system-deps prerequisites are taken as made: ``-o``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


def _bench(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text(body)
    return str(path)


def _make_bench(benches: list[str]) -> subprocess.CompletedProcess[str]:
    make = require_tool("make")
    return subprocess.run(
        [
            make,
            "--no-print-directory",
            "-o",
            "system-deps-bench",
            "-o",
            ".venv/.installed",
            "bench",
            f"PY={sys.executable}",
            f"BENCHES={' '.join(benches)}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_bench_runs_and_the_misses_are_listed_at_the_end(tmp_path: Path) -> None:
    slow = _bench(tmp_path, "slow.py", 'print("slow: 10 calls/s")\nraise SystemExit(1)\n')
    fine = _bench(tmp_path, "fine.py", 'print("fine: target met")\n')
    broken = _bench(tmp_path, "broken.py", 'print("broken: 3 of 5")\nraise SystemExit(3)\n')
    result = _make_bench([slow, fine, broken])
    assert result.returncode != 0
    out = result.stdout
    assert f"== {fine}" in out and "fine: target met" in out  # ran after the first miss
    summary = out.split("== targets missed:", 1)[1]
    assert f"-- {slow} (exit 1):" in summary and "slow: 10 calls/s" in summary
    assert f"-- {broken} (exit 3):" in summary and "broken: 3 of 5" in summary
    assert fine not in summary


def test_all_targets_met_exits_zero(tmp_path: Path) -> None:
    fine = _bench(tmp_path, "fine.py", 'print("fine")\n')
    result = _make_bench([fine])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every bench met its targets" in result.stdout
