"""Count refusal tests and how many of them check that nothing changed, per tests/ subfolder.

A refusal test is a ``test_*`` function whose body expects a refusal: ``pytest.raises(...)``, a
gRPC refusal code (``StatusCode.PERMISSION_DENIED``, ``INVALID_ARGUMENT``,
``FAILED_PRECONDITION``, ``NOT_FOUND``, ``ALREADY_EXISTS``, ``UNAUTHENTICATED``) or a 4xx HTTP
status compared in an assertion. It "uses the helper" when its body calls ``unchanged(``
(tests/unchanged.py). Prints the Markdown table docs/testing.md shows (``## Nothing changed``).

    python scripts/refusal_census.py [tests]
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REFUSAL = re.compile(
    r"pytest\.raises\(|StatusCode\.(PERMISSION_DENIED|INVALID_ARGUMENT|FAILED_PRECONDITION"
    r"|NOT_FOUND|ALREADY_EXISTS|UNAUTHENTICATED)\b|(==|!=|in)\s*[\(\{\[]?\s*4\d\d\b"
    r"|status_code\s*==\s*4\d\d"
)
HELPER = re.compile(r"\bunchanged\(")
AREAS = ("idp", "oidc", "ca", "seal", "license", "verify")


def census(root: Path) -> dict[str, tuple[int, int]]:
    """Per subfolder: (refusal tests, refusal tests using the helper)."""
    counts: dict[str, tuple[int, int]] = {}
    for path in sorted(root.rglob("test_*.py")):
        area = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else "."
        source = path.read_text()
        refusals, helped = counts.get(area, (0, 0))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                body = ast.get_source_segment(source, node) or ""
                if REFUSAL.search(body):
                    refusals += 1
                    helped += bool(HELPER.search(body))
        counts[area] = (refusals, helped)
    return counts


def table(counts: dict[str, tuple[int, int]]) -> str:
    """The census as a Markdown table, the issue's areas first."""
    order = [a for a in AREAS if a in counts] + sorted(a for a in counts if a not in AREAS)
    lines = ["| tests/ | refusal tests | use `unchanged` |", "|---|---:|---:|"]
    lines += [f"| {a} | {counts[a][0]} | {counts[a][1]} |" for a in order]
    total = (sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()))
    lines.append(f"| **all** | {total[0]} | {total[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(census(Path(sys.argv[1] if len(sys.argv) > 1 else "tests"))))
