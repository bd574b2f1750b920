"""Count refusal tests and how many of them check that nothing changed, per tests/ subfolder.

A refusal test is a ``test_*`` function whose body expects a refusal: ``pytest.raises(...)``, a
gRPC refusal code (``StatusCode.PERMISSION_DENIED``, ``INVALID_ARGUMENT``,
``FAILED_PRECONDITION``, ``NOT_FOUND``, ``ALREADY_EXISTS``, ``UNAUTHENTICATED``) or a 4xx HTTP
status compared in an assertion. It "uses the helper" when its body calls ``unchanged(``
(tests/unchanged.py) or a test helper whose own body does (e.g. ``GrpcHandle.fails`` in
tests/idp/conftest.py, through which every identity gRPC refusal goes). A refusal test is
"pure" when it takes no fixture but parametrize values and ``monkeypatch``/``capsys``/``caplog``:
a validator or codec refusing a value, with no database, key store or file to change. Prints the
Markdown table docs/testing.md shows (``## Nothing changed``).

    python scripts/refusal_census.py [tests]              # the table
    python scripts/refusal_census.py --unchecked [tests]  # the stateful tests without it
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REFUSAL = re.compile(
    r"pytest\.raises\(|StatusCode\.(PERMISSION_DENIED|INVALID_ARGUMENT|FAILED_PRECONDITION"
    r"|NOT_FOUND|ALREADY_EXISTS|UNAUTHENTICATED)\b|(==|!=|in)\s*[\(\{\[]?\s*4\d\d\b"
    r"|status_code\s*==\s*4\d\d"
)
NOT_REFUSAL = re.compile(r"pytest\.raises\(asyncio\.CancelledError\)")
"""Expected but no refusal: a call the test itself cancelled."""
STATELESS_FIXTURES = {"monkeypatch", "capsys", "capfd", "caplog", "request"}
# Fixtures of one test file that hold no state (no database, key store or file): a test app or
# gRPC server built on no platform (``object()``/``None``), its TLS material. A refusal test
# taking only these is pure too. Keyed by the file's path under tests/.
NO_STATE_FIXTURES: dict[str, set[str]] = {
    "server/test_body_limits.py": {"client"},  # create_app(object(), ...): no platform
    "server/test_http_errors.py": {"client"},  # create_app(object(), ...): no platform
    "server/test_rpc_errors.py": {"server"},  # Authenticator(None): interceptor only
    "server/test_sync_transport.py": {"channel"},  # interceptor and test servicer, no platform
    "server/test_mtls.py": {"pki", "tls_port"},  # in-memory PKI, a WhoAmI test server
    "ca/test_path.py": {"pki"},  # certificates built in memory with cryptography
    "seal/test_ofd_document.py": {"cjk_font"},  # font bytes; documents built in memory
}
AREAS = ("idp", "oidc", "ca", "seal", "license", "verify")


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


@functools.cache
def _helpers(root: Path, area: str) -> re.Pattern[str]:
    """``unchanged(`` or a call of a non-test function of the area (or tests/ itself) calling it."""
    names = {"unchanged"}
    paths = sorted(root.glob("*.py")) + (sorted((root / area).rglob("*.py")) if area != "." else [])
    for path in paths:
        source = path.read_text()
        for node in _functions(ast.parse(source)):
            body = ast.get_source_segment(source, node) or ""
            if not node.name.startswith("test_") and re.search(r"\bunchanged\(", body):
                names.add(node.name)
    return re.compile(r"\b(" + "|".join(sorted(names)) + r")\(")


def _parametrized(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Arguments filled by ``pytest.mark.parametrize`` or hypothesis ``given`` (not fixtures)."""
    names: set[str] = set()
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("given"):
            positional = [a.arg for a in node.args.args][-len(decorator.args) :]
            names |= set(positional if decorator.args else []) | {
                k.arg for k in decorator.keywords if k.arg
            }
        if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("parametrize"):
            first = decorator.args[0] if decorator.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names |= {n.strip() for n in first.value.split(",")}
            elif isinstance(first, ast.Tuple | ast.List):
                names |= {
                    e.value
                    for e in first.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                }
    return names


def _pure(node: ast.FunctionDef | ast.AsyncFunctionDef, where: str = "") -> bool:
    fixtures = {a.arg for a in node.args.args} - _parametrized(node) - STATELESS_FIXTURES
    return not (fixtures - NO_STATE_FIXTURES.get(where, set()))


def _refusal_tests(root: Path) -> Iterator[tuple[str, str, bool, bool]]:
    """Each refusal test as (area, ``path::name``, pure, uses the helper)."""
    for path in sorted(root.rglob("test_*.py")):
        if path.name == "test_unchanged.py":
            continue  # the helper's own tests expect its AssertionError, not a refusal
        area = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else "."
        source = path.read_text()
        helper = _helpers(root, area)
        where = path.relative_to(root).as_posix()
        for node in _functions(ast.parse(source)):
            body = ast.get_source_segment(source, node) or ""
            if node.name.startswith("test_") and REFUSAL.search(NOT_REFUSAL.sub("", body)):
                yield area, f"{where}::{node.name}", _pure(node, where), bool(helper.search(body))


def census(root: Path) -> dict[str, tuple[int, int, int]]:
    """Per subfolder: (refusal tests, of them pure, of them using the helper)."""
    counts: dict[str, tuple[int, int, int]] = {}
    for area, _name, pure, helped in _refusal_tests(root):
        refusals, pures, helps = counts.get(area, (0, 0, 0))
        counts[area] = (refusals + 1, pures + pure, helps + helped)
    return counts


def unchecked(root: Path) -> list[str]:
    """The stateful refusal tests that do not use ``unchanged`` (what is left to do)."""
    return [name for _area, name, pure, helped in _refusal_tests(root) if not (pure or helped)]


def table(counts: dict[str, tuple[int, int, int]]) -> str:
    """The census as a Markdown table, the issue's areas first."""
    order = [a for a in AREAS if a in counts] + sorted(a for a in counts if a not in AREAS)
    lines = [
        "| tests/ | refusal tests | pure (no state) | use `unchanged` | stateful, unchecked |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [(a, *counts[a]) for a in order if counts[a][0]]
    rows.append(("**all**", *(sum(c[i] for c in counts.values()) for i in range(3))))  # type: ignore[arg-type]
    for area, refusals, pure, helped in rows:
        gap = refusals - pure - helped
        lines.append(f"| {area} | {refusals} | {pure} | {helped} | {gap} |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--unchecked"]
    tests = Path(args[0] if args else "tests")
    if "--unchecked" in sys.argv:
        print("\n".join(unchecked(tests)))
    else:
        print(table(census(tests)))
