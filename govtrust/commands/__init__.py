"""CLI command groups, one module per area; each exposes ``register(subparsers)``.

:mod:`govtrust.cli` imports every group explicitly and builds the command tree. The helpers the
groups share (exit codes, ``--data-dir``, opening the instance, gRPC calls) live here, below the
CLI, so that no group imports :mod:`govtrust.cli`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govtrust.config import Settings, load_settings

if TYPE_CHECKING:
    from govtrust.platform import Platform

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """The settings ``args`` (``--data-dir``, ``--config``) and ``extra`` flags give."""
    flags = {"data_dir": getattr(args, "data_dir", None), **extra}
    return load_settings(flags, config_file=getattr(args, "config", None))


def open_instance(args: argparse.Namespace) -> Platform:
    """The platform of the existing instance ``args`` point at; :class:`NoInstance` (one line,
    exit 2, nothing created) when there is none. Only ``init`` and ``serve`` create one. Its
    components are defined as a server's are (:func:`govtrust.server.wiring.define_components`)."""
    from govtrust.platform import open_platform
    from govtrust.server.wiring import define_components

    platform = open_platform(settings_from_args(args), create=False)
    define_components(platform)
    return platform


_UNREACHABLE = ("failed to connect", "connection refused", "dns resolution failed", "unreachable")


def rpc_error_message(exc: Any, server: str) -> str:
    """One line for a failed gRPC call: a server that cannot be reached is named as such."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code is not None else "ERROR"
    if name == "UNAVAILABLE" and any(m in (details or "").lower() for m in _UNREACHABLE):
        return f"the govtrust server at {server} is not running or not reachable (--server)"
    return f"{name}: {details}"


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` and ``--config`` to ``parser``."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (SQLite database, master key); default ./var or GOVTRUST_DATA_DIR",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")


def call_rpc(
    args: argparse.Namespace, stub_class: Any, method: str, request: Any, prog: str
) -> Any:
    """Call ``method`` on ``args.server`` (plaintext gRPC) with ``args.token`` or
    ``GOVTRUST_TOKEN`` as bearer token; on an error print ``PROG: CODE: details`` and exit 1."""
    import grpc

    token = args.token or os.environ.get("GOVTRUST_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(args.server) as channel:
        try:
            return getattr(stub_class(channel), method)(
                request, metadata=metadata, timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"{prog}: {rpc_error_message(exc, args.server)}", file=sys.stderr)
            raise SystemExit(1) from None
