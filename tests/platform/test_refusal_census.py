"""Every refusal test that holds state checks that nothing changed (issue 23 item 4): the census
of scripts/refusal_census.py finds none unchecked, so a new refusal test without ``unchanged``
fails here rather than going unnoticed until someone counts again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_stateful_refusal_test_goes_unchecked() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "refusal_census.py"), "--unchecked"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=ROOT,
    )
    unchecked = [line for line in result.stdout.splitlines() if line.strip()]
    assert unchecked == [], "refusal tests without unchanged:\n" + "\n".join(unchecked)
