"""The ``govtrust`` command line.

Commands that act on a data directory take ``--data-dir``; commands that act on a running
service are gRPC clients (``--server host:port``). Configuration errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govtrust import __version__
from govtrust.config import ConfigError, Settings, load_settings
from govtrust.errors import GovtrustError
from govtrust.instance import NoInstance

if TYPE_CHECKING:
    from govtrust.platform import Platform

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]

# Command groups contributed by each area; each module exposes ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "govtrust.commands.identity",
    "govtrust.commands.ca",
    "govtrust.commands.service",
    "govtrust.commands.oidc",
    "govtrust.commands.seal",
    "govtrust.commands.license",
    "govtrust.commands.verify",
    "govtrust.commands.audit",
)


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    flags = {"data_dir": getattr(args, "data_dir", None), **extra}
    return load_settings(flags, config_file=getattr(args, "config", None))


def open_instance(args: argparse.Namespace) -> Platform:
    """The platform of the existing instance ``args`` point at; :class:`NoInstance` (one line,
    exit 2, nothing created) when there is none. Only ``init`` and ``serve`` create one."""
    from govtrust.platform import open_platform

    return open_platform(settings_from_args(args), create=False)


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
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (SQLite database, master key); default ./var or GOVTRUST_DATA_DIR",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run gRPC and HTTP in one process (or N workers sharing both ports)."""
    settings = settings_from_args(
        args,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        workers=args.workers,
        migrate=False if args.no_migrate else None,
    )
    from govtrust.server.run import serve

    return serve(settings)


def cmd_init(args: argparse.Namespace) -> int:
    """Create the data directory, master key and database schema, then exit."""
    settings = settings_from_args(args)
    from govtrust.platform import open_platform

    platform = open_platform(settings, migrate=True)
    try:
        print(f"govtrust: initialised {settings.data_dir} ({platform.db.engine.dialect.name})")
    finally:
        platform.close()
    return EXIT_OK


def cmd_version(_args: argparse.Namespace) -> int:
    """Print the version."""
    print(f"govtrust {__version__}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The full command tree (``--help`` works at every level)."""
    parser = argparse.ArgumentParser(
        prog="govtrust",
        description="Trust infrastructure for e-government: identities, CA, OIDC, seals, licences.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="serve gRPC and HTTP")
    add_data_dir(serve)
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default 50051)")
    serve.add_argument("--http-port", type=int, default=None, help="HTTP port (default 8080)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="refuse to start when the schema is behind instead of migrating",
    )
    serve.set_defaults(handler=cmd_serve)

    init = commands.add_parser("init", help="create a data directory and its database")
    add_data_dir(init)
    init.set_defaults(handler=cmd_init)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=cmd_version)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``govtrust`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"govtrust: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NoInstance as exc:
        print(f"govtrust: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except GovtrustError as exc:
        print(f"govtrust: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
