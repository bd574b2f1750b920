"""Only ``init`` and ``serve`` create an instance; every other command pointed at a missing one
says so in one line (exit 2) and creates nothing. A replica whose master key or key store is not
the one the instance was bootstrapped with is refused; the key store is checked before migrating.

Every case runs the real CLI as a subprocess.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from govtrust.config import Settings
from govtrust.db import Database
from govtrust.instance import InstanceBootstrap
from govtrust.platform import open_platform
from hsm.master import MasterKey
from tests.conftest import PG_ADMIN_URL, _pg_admin
from tests.hsm.conftest import SoftHsmToken, softhsm_token  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVTRUST_")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _govtrust(
    *args: str, env: dict[str, str], cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "govtrust", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single non-log stderr line (JSON log lines from migrations are dropped)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


def _non_creating_commands(tmp_path: Path) -> list[list[str]]:
    csv = tmp_path / "citizens.csv"
    csv.write_text("name,id_number\n")
    cert = tmp_path / "cert.pem"
    cert.write_text("not read before the instance is found\n")
    return [
        ["license", "types"],
        ["license", "types", "--seed"],
        ["oidc", "key", "rotate", "--alg", "RS256"],
        ["audit", "verify"],
        ["oidc", "client", "list"],
        ["verify", "cert", str(cert)],
        ["identity", "import", str(csv), "--kind", "citizens"],
    ]


@pytest.mark.parametrize("state", ["missing", "typo", "uninitialised"])
def test_non_creating_commands_refuse_a_missing_instance(tmp_path: Path, state: str) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    commands = _non_creating_commands(inputs)
    work = tmp_path / "work"
    work.mkdir()
    name = "vra" if state == "typo" else "var"  # a typo of an existing instance's directory
    if state == "typo":
        assert _govtrust("init", "--data-dir", "var", env=_env(), cwd=work).returncode == 0
    if state == "uninitialised":
        (work / "var").mkdir()
        (work / "var" / "govtrust.db").write_bytes(b"")  # what the old audit verify left behind
        expected = "is not an initialised govtrust instance; `govtrust init --data-dir var`"
    else:
        expected = f"no govtrust instance at {name} (govtrust.db does not exist); `govtrust init"
    data_dir = f"./{name}"
    before = _tree(work)
    for command in commands:
        result = _govtrust(*command, "--data-dir", data_dir, env=_env(), cwd=work)
        assert result.returncode == 2, (command, result.stderr)
        assert expected in _one_line(result), command
        assert result.stdout == ""
        assert _tree(work) == before, command  # no directory, database or master key created


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """An existing but empty PostgreSQL database (no govtrust schema)."""
    try:
        admin = _pg_admin()
    except Exception as exc:  # noqa: BLE001 - the PostgreSQL leg cannot run
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"gt_{uuid.uuid4().hex[:16]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(url: str) -> list[str]:
    db = Database(url)
    try:
        return inspect(db.engine).get_table_names()
    finally:
        db.dispose()


def test_non_creating_commands_refuse_an_uninitialised_postgresql(
    empty_pg_database: str, tmp_path: Path
) -> None:
    env = _env(GOVTRUST_DATABASE_URL=empty_pg_database, GOVTRUST_MASTER_KEY=_key())
    for command in (["audit", "verify"], ["license", "types"]):
        result = _govtrust(*command, "--data-dir", str(tmp_path / "d"), env=env)
        assert result.returncode == 2, result.stderr
        line = _one_line(result)
        assert "is not an initialised govtrust instance" in line, line
        assert "`govtrust init` with the same GOVTRUST_DATABASE_URL creates one" in line
    assert _tables(empty_pg_database) == []
    assert not (tmp_path / "d").exists()
    missing = empty_pg_database + "_missing"
    result = _govtrust("audit", "verify", env={**env, "GOVTRUST_DATABASE_URL": missing})
    assert result.returncode == 2
    assert "cannot open the database PostgreSQL" in _one_line(result)


def test_license_types_on_a_fresh_instance_says_how_to_seed(tmp_path: Path) -> None:
    env = _env()
    assert _govtrust("init", "--data-dir", "var", env=env, cwd=tmp_path).returncode == 0
    result = _govtrust("license", "types", "--data-dir", "var", env=env, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == ""
    line = _one_line(result)
    assert "no licence types defined yet" in line
    assert "`govtrust license types --seed --data-dir var [--issuer DEPT-USCC]`" in line
    seeded = _govtrust("license", "types", "--seed", "--data-dir", "var", env=env, cwd=tmp_path)
    assert seeded.returncode == 0 and "营业执照" in seeded.stdout, seeded.stderr


def _bootstrap(url: str) -> tuple[str, str, str | None]:
    db = Database(url)
    try:
        with db.read() as session:
            row = session.scalars(select(InstanceBootstrap)).one()
            return row.master_key_check, row.keystore, row.pkcs11_token_label
    finally:
        db.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_replica_with_a_foreign_master_key_is_refused(database_url: str, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL (``database_url``): an instance bootstrapped before the record
    existed gets it on its first start; a start with another master key is refused."""
    key = _key()
    data_dir = str(tmp_path / "replica")
    own = _env(GOVTRUST_DATABASE_URL=database_url, GOVTRUST_MASTER_KEY=key)
    first = _govtrust("license", "types", "--data-dir", data_dir, env=own)  # first start
    assert first.returncode == 0, first.stderr
    recorded = _bootstrap(database_url)
    assert recorded == (MasterKey.from_base64(key).check_value(), "soft", None)
    assert key not in str(recorded)

    foreign = {**own, "GOVTRUST_MASTER_KEY": _key()}
    ports = ["--grpc-port", str(_free_port()), "--http-port", str(_free_port())]
    served = _govtrust("serve", "--data-dir", data_dir, *ports, env=foreign)
    assert served.returncode == 1
    assert "listening on" not in served.stdout
    assert _one_line(served) == (
        "govtrust: cannot start: the master key (from GOVTRUST_MASTER_KEY) is not the one this "
        "database was bootstrapped with (its key check value differs); give every replica the "
        "same GOVTRUST_MASTER_KEY"
    )
    seeded = _govtrust("license", "types", "--seed", "--data-dir", data_dir, env=foreign)
    assert seeded.returncode == 1 and "its key check value differs" in _one_line(seeded)
    assert _bootstrap(database_url) == recorded
    listed = _govtrust("license", "types", "--data-dir", data_dir, env=own)
    assert listed.returncode == 0 and listed.stdout == ""  # the refused --seed wrote nothing


def test_soft_key_store_on_a_pkcs11_instance_names_both(
    softhsm_token: SoftHsmToken,  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    key = _key()
    settings = Settings(
        data_dir=tmp_path / "d",
        database_url=database_url,
        hsm="pkcs11",
        pkcs11_module=softhsm_token.module,
        pkcs11_token_label=softhsm_token.label,
        pkcs11_pin=softhsm_token.pin,
    )
    os.environ["GOVTRUST_MASTER_KEY"] = key
    try:
        open_platform(settings).close()  # bootstraps on the PKCS#11 token
    finally:
        del os.environ["GOVTRUST_MASTER_KEY"]
    recorded = _bootstrap(database_url)
    assert recorded[1:] == ("pkcs11", softhsm_token.label)
    env = _env(GOVTRUST_DATABASE_URL=database_url, GOVTRUST_MASTER_KEY=key, **softhsm_token.env)
    ports = ["--grpc-port", str(_free_port()), "--http-port", str(_free_port())]
    served = _govtrust("serve", "--data-dir", str(tmp_path / "d"), *ports, env=env)
    assert served.returncode == 1 and "listening on" not in served.stdout
    assert _one_line(served) == (
        "govtrust: cannot start: the configured key store (soft) differs from the one this "
        f"database was bootstrapped with (PKCS#11 token {softhsm_token.label!r}); set "
        f"GOVTRUST_HSM=pkcs11 and GOVTRUST_PKCS11_TOKEN_LABEL={softhsm_token.label}"
    )
    assert _bootstrap(database_url) == recorded


def test_a_bad_pkcs11_module_stops_the_start_before_migrating(
    empty_pg_database: str, tmp_path: Path
) -> None:
    env = _env(
        GOVTRUST_DATABASE_URL=empty_pg_database,
        GOVTRUST_HSM="pkcs11",
        GOVTRUST_PKCS11_MODULE=str(tmp_path / "no-such-module.so"),
        GOVTRUST_PKCS11_TOKEN_LABEL="govtrust",
        GOVTRUST_PKCS11_PIN="1234",
    )
    ports = ["--grpc-port", str(_free_port()), "--http-port", str(_free_port())]
    served = _govtrust("serve", "--data-dir", str(tmp_path / "d"), *ports, env=env)
    assert served.returncode == 1
    line = _one_line(served)
    assert line.startswith("govtrust: cannot start: PKCS#11 module") and "does not exist" in line
    assert _tables(empty_pg_database) == []  # no migration ran


@pytest.mark.parametrize("command", [["ca", "chain"], ["seal", "list"]])
def test_client_commands_name_an_unreachable_server(command: list[str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    result = _govtrust(*command, "--server", address, "--timeout", "20", env=_env())
    assert result.returncode == 1
    line = _one_line(result)
    assert f"the govtrust server at {address} is not running or not reachable" in line
    assert "UNAVAILABLE" not in line


def test_top_level_help_lists_only_real_ca_subcommands() -> None:
    top = _govtrust("--help", env=_env()).stdout
    ca = _govtrust("ca", "--help", env=_env()).stdout
    match = re.search(r"\bca\s+certificate authority \(([^)]*)\)", " ".join(top.split()))
    assert match, top
    listed = match.group(1).split(", ")
    for name in listed:
        assert f"    {name.lower()} " in ca, name
    assert "status" not in listed


def test_banner_audit_hint_reads_the_same_database(tmp_path: Path) -> None:
    from govtrust.server.banner import banner_lines
    from govtrust.server.process import BoundPorts

    url = "postgresql://govtrust:s3cret@db.internal:5433/govtrust"
    lines = banner_lines(Settings(data_dir=tmp_path, database_url=url), BoundPorts(1, 2))
    hint = next(line for line in lines if "audit verify" in line)
    assert "GOVTRUST_DATABASE_URL=postgresql://govtrust@db.internal:5433/govtrust " in hint
    assert "PGPASSWORD=" in hint and "s3cret" not in "\n".join(lines)
    embedded = banner_lines(Settings(data_dir=tmp_path), BoundPorts(1, 2))
    assert "GOVTRUST_DATABASE_URL" not in next(x for x in embedded if "audit verify" in x)
