"""The architecture contracts (``[tool.importlinter]`` in pyproject.toml, docs/architecture.md
"Enforced layers"): the tree keeps them, every top-level module is placed in the layers, each
contract breaks on an import planted against it, and the two rules import-linter cannot see
(no module named by string, private keys made and loaded only in ``hsm``) hold too."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LINTER = PYPROJECT["tool"]["importlinter"]
CONTRACTS: dict[str, dict[str, Any]] = {c["id"]: c for c in LINTER["contracts"]}
ROOTS: list[str] = LINTER["root_packages"]
DOMAIN = ("hsm", "ca", "idp", "seal", "license", "verify")

# lint_imports adds the working directory to sys.path; run in a child so that the tree linted
# is the one in ``cwd`` and not the packages this test process has already imported.
_LINT = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename='pyproject.toml', cache_dir=sys.argv[1],"
    " no_logo=True, limit_to_contracts=tuple(sys.argv[2:])))\n"
)


def lint(tree: Path, cache: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on ``tree`` (all contracts, or just ``contracts``)."""
    return subprocess.run(
        [sys.executable, "-c", _LINT, str(cache), *contracts],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def placed_in_layers() -> list[str]:
    """Every module the layers contract names, one entry per mention."""
    return [
        name.strip() for layer in CONTRACTS["layers"]["layers"] for name in re.split("[|:]", layer)
    ]


def python_files(package: str) -> Iterator[Path]:
    """The package's modules, less the generated gRPC stubs."""
    for path in sorted((ROOT / package).rglob("*.py")):
        if "_pb2" not in path.name:
            yield path


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint(ROOT, tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_every_top_level_module_is_placed_in_the_layers_once() -> None:
    """A new module under govtrust/ (or a new root package) fails here until it is given its
    layer: pyproject.toml and docs/architecture.md say how."""
    placed = placed_in_layers()
    assert len(placed) == len(set(placed)), "a module is named in two layers"
    platform = ROOT / "govtrust"
    top_level = {
        f"govtrust.{path.stem}"
        for path in platform.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").exists()
    }
    assert set(placed) == top_level | (set(ROOTS) - {"govtrust"})


def test_the_contracts_cover_every_package_of_the_distribution() -> None:
    shipped = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(ROOTS) == sorted(pattern.rstrip("*") for pattern in shipped)
    assert LINTER["include_external_packages"] is True  # grpc, fastapi and pkcs11 are external
    assert tuple(CONTRACTS["domain-transport-free"]["source_modules"]) == DOMAIN
    assert CONTRACTS["key-custody"]["allowed_importers"] == ["hsm"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tree with one planted import against each contract."""
    tree = tmp_path_factory.mktemp("planted")
    skip = shutil.ignore_patterns("__pycache__")
    for package in ROOTS:
        shutil.copytree(ROOT / package, tree / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tree)
    plants = {
        "hsm/_planted.py": "import ca.config\n",  # upward: hsm below ca
        "govtrust/observability/_planted.py": "from govtrust.server import run\n",  # the old cycle
        "verify/_planted.py": "import grpc\n",
        "seal/_planted.py": "from govtrust.api import seal\n",
        "govtrust/observability/_planted_http.py": "import fastapi\n",
        "license/_planted.py": "from hsm.soft import SoftKeyStore\n",
        "ca/_planted.py": "import pkcs11\n",
    }
    for path, text in plants.items():
        (tree / path).write_text(text)
    return tree


@pytest.mark.parametrize(
    ("contract", "planted_import"),
    [
        ("layers", "hsm._planted -> ca.config"),
        ("layers", "govtrust.observability._planted -> govtrust.server.run"),
        ("domain-transport-free", "verify._planted -> grpc"),
        ("domain-transport-free", "seal._planted -> govtrust.api.seal"),
        ("platform-core-transport-free", "govtrust.observability._planted_http -> fastapi"),
        ("key-custody", "license._planted -> hsm.soft"),
        ("key-custody", "ca._planted -> pkcs11"),
    ],
)
def test_a_planted_import_breaks_its_contract(
    planted: Path, contract: str, planted_import: str
) -> None:
    result = lint(planted, planted / ".cache", contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 1 broken." in result.stdout
    assert re.search(rf"^-\s+{re.escape(planted_import)} \(l\.1\)$", result.stdout, re.M), (
        result.stdout
    )


def _called_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_no_module_is_named_by_string() -> None:
    """Wiring is explicit imports (govtrust.server.adapters, govtrust.cli), never a module name
    in a string that import-linter cannot follow."""
    by_name = {"import_module", "__import__", "spec_from_file_location", "find_spec"}
    offenders = [
        f"{path.relative_to(ROOT)}: {', '.join(sorted(found))}"
        for package in ROOTS
        for path in python_files(package)
        if (found := _called_names(path) & by_name)
    ]
    assert offenders == []


PRIVATE_KEY_CALLS = {
    "derive_private_key",
    "from_private_bytes",
    "generate_private_key",
    "load_der_private_key",
    "load_key_and_certificates",
    "load_pem_private_key",
    "load_ssh_private_key",
    "private_bytes",
}


def test_private_keys_are_made_and_loaded_only_in_hsm() -> None:
    """What the key-custody contract cannot see (cryptography is one external package): no
    module outside hsm generates, loads, derives or serialises a private key."""

    def calls(package: str) -> dict[str, set[str]]:
        return {
            str(path.relative_to(ROOT)): found
            for path in python_files(package)
            if (found := _called_names(path) & PRIVATE_KEY_CALLS)
        }

    assert calls("hsm"), "the scan finds hsm's own key handling"
    assert {package: calls(package) for package in ROOTS if package != "hsm"} == {
        package: {} for package in ROOTS if package != "hsm"
    }


def test_make_lint_runs_the_contracts_with_the_pinned_linter() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint_target = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "lint-imports" in lint_target
    pins = (ROOT / "requirements.lock").read_text().splitlines()
    assert "import-linter==2.17" in pins and "grimp==3.20" in pins
