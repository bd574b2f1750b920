"""Regenerate the role tables in docs/security.md from the code that enforces them.

    python scripts/role_tables.py           # rewrite the marked region
    python scripts/role_tables.py --check   # exit 1 when the committed text is stale

The tables come from ``seal.transitions.TRANSITIONS`` and ``govtrust.api.access.RPC_ACCESS``
(see :func:`govtrust.api.access.render_role_tables`); tests/platform/test_access.py fails when
docs/security.md differs from what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from govtrust.api.access import with_role_tables  # noqa: E402

DOC = REPO / "docs" / "security.md"


def main(argv: list[str]) -> int:
    """Rewrite (or with ``--check`` compare) the generated region; 0 when up to date."""
    current = DOC.read_text(encoding="utf-8")
    wanted = with_role_tables(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{DOC} is stale: run python scripts/role_tables.py", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"rewrote the role tables in {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
