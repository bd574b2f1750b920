"""What ``govtrust serve`` prints on stdout once it listens: endpoints, storage, what to try.

The last two lines are machine-parsable (tests and scripts wait for them)::

    govtrust: grpc listening on 127.0.0.1:50051
    govtrust: http listening on http://127.0.0.1:8080
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from govtrust.config import Settings
from govtrust.db import describe_database
from govtrust.server.process import BoundPorts, format_host
from govtrust.server.services import SERVICE_NAMES

INSECURE_LOOPBACK_WARNING = (
    "WARNING: loopback without TLS: every local caller is admin — embedded default only"
)


def describe_keystore(settings: Settings) -> str:
    """Kind of key store and where its keys live."""
    if settings.hsm == "pkcs11":
        return f"PKCS#11 token {settings.pkcs11_token_label!r} ({settings.pkcs11_module})"
    return "soft (keys wrapped with AES-256-GCM under the master key, stored in the database)"


def _command(path: str | None, fallback: str) -> str:
    if not path:
        return fallback
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return relative if not relative.startswith("..") else path


def _govtrust_command() -> str:
    sibling = Path(sys.executable).with_name("govtrust")
    if sibling.exists():
        return _command(str(sibling), "govtrust")
    return _command(shutil.which("govtrust"), "govtrust")


def _database_env(settings: Settings) -> str:
    """``GOVTRUST_DATABASE_URL=… `` (password left out) when the database is not the data
    directory's SQLite file, so the suggested command reads the same database."""
    if settings.database_url is None:
        return ""
    url = make_url(settings.database_url)
    shown = url._replace(password=None).render_as_string(hide_password=False)
    password = "PGPASSWORD=… " if url.password else ""
    return f"{password}GOVTRUST_DATABASE_URL={shlex.quote(shown)} "


def banner_lines(settings: Settings, ports: BoundPorts) -> list[str]:
    """The start-up text (without a trailing newline)."""
    host = format_host(settings.host)
    scheme = "https" if settings.tls_enabled else "http"
    grpc_address = f"{host}:{ports.grpc_port}"
    http_base = f"{scheme}://{host}:{ports.http_port}"
    if settings.tls_enabled:
        transport = "TLS, client certificate required" if settings.tls_client_ca else "TLS"
    else:
        transport = "plaintext, loopback only"
    python = _command(sys.executable, "python")
    data_dir = shlex.quote(str(settings.data_dir))
    lines = [
        f"govtrust serving (pid {os.getpid()}, {settings.workers} worker"
        f"{'s' if settings.workers != 1 else ''})",
        f"  gRPC       {grpc_address} ({transport})",
        f"             services: {', '.join(SERVICE_NAMES)}",
        "             + grpc.health.v1.Health, server reflection",
        f"  HTTP       {http_base}",
        f"  health     {http_base}/healthz   ready: {http_base}/readyz",
        f"  metrics    {http_base}/metrics",
        f"  data dir   {settings.data_dir.resolve()}",
        f"  database   {describe_database(settings.effective_database_url)}",
        f"  key store  {describe_keystore(settings)}",
    ]
    if not settings.tls_enabled:
        lines.append(INSECURE_LOOPBACK_WARNING)
    curl_tls = " --cacert <ca.pem>" if settings.tls_enabled else ""
    lines += [
        "What to try:",
        f"  curl{curl_tls} {http_base}/healthz",
        f"  curl{curl_tls} {http_base}/readyz",
    ]
    if not settings.tls_enabled:
        lines.append(f"  {python} -m govtrust.server.probe {grpc_address}")
    lines += [
        f"  {_database_env(settings)}{_govtrust_command()} audit verify --data-dir {data_dir}",
        "Stop with Ctrl-C (or SIGTERM): in-flight calls finish first.",
        f"govtrust: grpc listening on {grpc_address}",
        f"govtrust: http listening on {http_base}",
    ]
    return lines


def print_banner(settings: Settings, ports: BoundPorts) -> None:
    """Print the start-up text on stdout and flush it (readers wait for the last line)."""
    print("\n".join(banner_lines(settings, ports)), flush=True)
