"""Each package owns its tables (docs/architecture.md "Who owns which table"): SQL text or an
ORM model import in one package never names another package's table; other packages read them
through the functions the owner offers.

Ownership comes from the models themselves: a module declaring ``__tablename__`` owns those
tables, and the owner is its package (``ca.models`` → ``ca``; ``idp.oidc.models`` →
``idp.oidc``, a package of its own) or, in the platform, the module (``govtrust.audit``). A
source module belongs to the longest owner that prefixes its name, else to its top-level package.
The scan reads the source with :mod:`ast`: every string literal that is not a docstring is SQL
text when a table name follows ``FROM``, ``JOIN``, ``INTO``, ``UPDATE`` or ``TABLE``; every
``import`` of an owner's ``models`` module (or of a model from it) is an ORM use.

Alembic revisions and the schema module, which describe every table, are not scanned. A crossing
would have to be listed in :data:`ALLOWED` with its reason (none is); an entry that no longer
matches anything fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("govtrust", "hsm", "ca", "idp", "seal", "license", "verify")
NOT_SCANNED = ("govtrust.v1", "govtrust.migrations", "govtrust.schema")
_SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+([A-Za-z_][A-Za-z0-9_]*)", re.I)

# (module, table or models module named) -> why it is allowed for now: none is left.
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    """The dotted module name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> Iterator[tuple[str, Path]]:
    """Every scanned module of the packages, with its file."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = module_name(path)
            if not any(name == n or name.startswith(n + ".") for n in NOT_SCANNED):
                yield name, path


def owners() -> dict[str, str]:
    """Table name -> owner (see the module docstring), read from every ``__tablename__``."""
    tables: dict[str, str] = {}
    for name, path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                tables[node.value.value] = name.removesuffix(".models")
    return tables


def unit_of(module: str, owner_units: set[str]) -> str:
    """The owner a module belongs to: the longest owner prefixing it, else its top package."""
    best = ""
    for owner in owner_units:
        if (module == owner or module.startswith(owner + ".")) and len(owner) > len(best):
            best = owner
    return best or module.split(".")[0]


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
        ):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


@dataclass(frozen=True)
class Crossing:
    """One place where ``module`` names ``target`` (a table, or an owner's models module)."""

    module: str
    line: int
    target: str
    owner: str
    how: str  # "SQL" or "ORM"

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.how} names {self.target} (owned by {self.owner})"


def crossings() -> list[Crossing]:
    """Every SQL text or model import naming a table its module's owner does not own."""
    tables = owners()
    owner_units = set(tables.values())
    # A domain owner's models live in ``<owner>.models``; the platform's tables are declared
    # in the very module that offers their functions (govtrust.audit), so importing it is fine.
    models_modules = {
        f"{owner}.models": owner for owner in owner_units if not owner.startswith("govtrust.")
    }
    found: list[Crossing] = []
    for module, path in sources():
        unit = unit_of(module, owner_units)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docs:
                    continue
                for table in _SQL_TABLE.findall(node.value):
                    owner = tables.get(table)
                    if owner is not None and owner != unit:
                        found.append(Crossing(module, node.lineno, table, owner, "SQL"))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    + [f"{node.module}.{alias.name}" for alias in node.names]
                )
                for imported in names:
                    owner = models_modules.get(imported)
                    if owner is not None and owner != unit:
                        found.append(Crossing(module, node.lineno, imported, owner, "ORM"))
    return found


def test_ownership_is_read_from_the_models() -> None:
    """The scan knows the tables (a rename in the models cannot silently empty it)."""
    tables = owners()
    assert tables["ca_certificates"] == "ca"
    assert tables["idp_identities"] == "idp"
    assert tables["oidc_grants"] == "idp.oidc"
    assert tables["seal_events"] == "seal"
    assert tables["licences"] == "license"


def test_no_package_names_another_packages_table() -> None:
    """SQL text and model imports name only the module's own owner's tables (or ALLOWED)."""
    found = crossings()
    unexpected = [str(c) for c in found if (c.module, c.target) not in ALLOWED]
    assert not unexpected, "read another package's table through its owner:\n" + "\n".join(
        unexpected
    )
    stale = sorted(set(ALLOWED) - {(c.module, c.target) for c in found})
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


def test_the_scan_finds_a_crossing() -> None:
    """The SQL pattern catches a table in a joined, multi-line literal and skips prose."""
    text = "SELECT c.status FROM ca_certificates c\n JOIN idp_identities i ON i.id = c.identity_id"
    assert _SQL_TABLE.findall(text) == ["ca_certificates", "idp_identities"]
    assert _SQL_TABLE.findall("the licences of a holder") == []
