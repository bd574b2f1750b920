"""Bad configuration or an unusable environment: non-zero exit, one clear line, no traceback."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.serving import REPO, serve_command, server_env

pytestmark = pytest.mark.slow


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _serve(*args: str, **env: str) -> tuple[int, list[str], str]:
    result = subprocess.run(
        serve_command(*args),
        cwd=REPO,
        env=server_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # JSON log lines may precede the error (e.g. migration notes); the error is the rest.
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert "Traceback" not in result.stderr, result.stderr
    assert "listening on" not in result.stdout
    return result.returncode, plain, result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--grpc-port", "99999"], "grpc_port: 99999 is not a TCP port"),
        (["--http-port", "-1"], "http_port: -1 is not a TCP port"),
        (["--workers", "0"], "workers: 0 is out of range"),
        (["--host", "0.0.0.0"], "needs TLS"),
    ],
)
def test_invalid_flags(tmp_path: Path, args: list[str], expected: str) -> None:
    code, lines, _ = _serve("--data-dir", str(tmp_path / "data"), *args)
    assert code != 0
    assert len(lines) == 1 and expected in lines[0], lines


def test_invalid_toml(tmp_path: Path) -> None:
    config = tmp_path / "govtrust.toml"
    config.write_text("grpc_port = [1\n")
    code, lines, _ = _serve("--data-dir", str(tmp_path / "data"), "--config", str(config))
    assert code != 0
    assert len(lines) == 1 and "is not valid TOML" in lines[0], lines


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        (
            "",
            {"GOVTRUST_CA_ISSUE_THREADS": "many"},
            "ca.issue_threads (environment GOVTRUST_CA_ISSUE_THREADS): expected an integer",
        ),
        ("[verify]\nfetch_timeout = 2\n", {}, "[verify]: unknown setting 'fetch_timeout'"),
        (
            "[ca]\nroot_key_algorithm = 'rsa-512'\n",
            {},
            "root_key_algorithm",
        ),
    ],
)
def test_a_bad_package_setting_stops_before_anything_is_created(
    tmp_path: Path, toml: str, env: dict[str, str], expected: str
) -> None:
    config = tmp_path / "govtrust.toml"
    config.write_text(toml)
    data = tmp_path / "data"
    code, lines, _ = _serve("--data-dir", str(data), "--config", str(config), **env)
    assert code == 2
    assert len(lines) == 1 and expected in lines[0], lines
    assert not data.exists()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("which", ["--grpc-port", "--http-port"])
def test_port_in_use(tmp_path: Path, busy_port: int, which: str, workers: str) -> None:
    other = "--http-port" if which == "--grpc-port" else "--grpc-port"
    code, lines, _ = _serve(
        "--data-dir",
        str(tmp_path / "data"),
        which,
        str(busy_port),
        other,
        "0",
        "--workers",
        workers,
    )
    assert code != 0
    assert len(lines) == 1 and f"127.0.0.1:{busy_port}: Address already in use" in lines[0]


def test_no_migrate_refuses_a_database_behind(tmp_path: Path) -> None:
    code, lines, _ = _serve(
        "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0", "--no-migrate"
    )
    assert code != 0
    assert len(lines) == 1 and "schema is behind" in lines[0], lines
