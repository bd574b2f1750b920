"""The spelling rule of docs/architecture.md "Naming": *license* only where an outside contract
fixes the name (packages, the proto and what mirrors it one to one, paths, the CLI), *licence*
in every other Python name. The test reads the proto itself for the contract's names, so a
name is allowed because the wire has it, not because this file lists it."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("govtrust", "hsm", "ca", "idp", "seal", "license", "verify")
CHECKED = (*PACKAGES, "bench", "scripts", "tests")  # test functions are named after what they test
GENERATED = ("v1", "migrations")  # protoc output; Alembic revisions name what they find

_PROTO_NAME = re.compile(
    r"^\s*(?:message|enum|service|rpc)\s+(\w+)"  # declarations
    r"|^\s*(\w+)\s*=\s*\d+\s*;"  # enum values
    r"|^\s*(?:repeated\s+|optional\s+)?[\w.]+\s+(\w+)\s*=\s*\d+",  # fields
    re.M,
)
_ENUM = re.compile(r"^\s*enum\s+(\w+)\s*\{([^}]*)\}", re.M)


def proto_names() -> set[str]:
    """Every message, enum, service, RPC, enum value and field name the .proto files declare."""
    names: set[str] = set()
    for proto in ROOT.glob("proto/**/*.proto"):
        for match in _PROTO_NAME.finditer(proto.read_text()):
            names.update(g for g in match.groups() if g)
    for proto in ROOT.glob("proto/**/*.proto"):  # enum values without the enum's prefix
        for enum, body in _ENUM.findall(proto.read_text()):
            prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum).upper() + "_"
            names.update(v.removeprefix(prefix) for v in re.findall(r"(\w+)\s*=\s*\d+", body))
    services = {n.removesuffix("Service") for n in names if n.endswith("Service")}
    names.update(f"{s}Servicer" for s in services)  # the adapter implementing a service
    return names


def cli_groups() -> set[str]:
    """``cmd_<command>`` handlers named after the command as the CLI spells it."""
    return {"cmd_license"}  # `govtrust verify license`, beside `govtrust license`


def named(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, name) of every class, function, argument and assigned name in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.lineno, node.name
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg
        elif isinstance(node, ast.Assign):
            yield from ((node.lineno, t.id) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.lineno, node.target.id


def misspelt(source: str, allowed: set[str]) -> list[tuple[int, str]]:
    """Names spelled *license* that no outside contract fixes."""
    return [
        (line, name)
        for line, name in named(ast.parse(source))
        if "license" in name.lower() and name not in allowed
    ]


def test_python_names_say_licence_unless_the_wire_says_license() -> None:
    allowed = proto_names() | cli_groups()
    found = []
    for package in CHECKED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if any(part in GENERATED for part in path.relative_to(ROOT).parts):
                continue
            for line, name in misspelt(path.read_text(), allowed):
                if not (package == "tests" and name.startswith("test_")):  # an RPC or CLI's name
                    found.append(f"{path.relative_to(ROOT)}:{line} {name}")
    assert not found, "spell these licence (docs/architecture.md, Naming):\n" + "\n".join(found)


def test_the_rule_catches_a_new_domain_name_and_spares_the_wire() -> None:
    allowed = proto_names() | cli_groups()
    assert {"LicenseServicer", "VerifyLicense", "LicenseReport", "LICENSE_REVOKED"} <= allowed
    source = (
        "class LicenseBook:\n"
        "    def renew_license(self, license_id: str) -> None:\n"
        "        license_count = 1\n"
        "class LicenseReport: ...\n"
        "class LicenceBook: ...\n"
    )
    assert sorted(misspelt(source, allowed)) == [
        (1, "LicenseBook"),
        (2, "license_id"),
        (2, "renew_license"),
        (3, "license_count"),
    ]
