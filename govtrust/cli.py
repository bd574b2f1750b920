"""The ``govtrust`` command line.

Commands that act on a data directory take ``--data-dir``; commands that act on a running
service are gRPC clients (``--server host:port``). Configuration errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from govtrust import __version__
from govtrust.commands import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Handler,
    add_data_dir,
    audit,
    ca,
    identity,
    license,
    oidc,
    reencrypt,
    seal,
    service,
    settings_from_args,
    verify,
)
from govtrust.config import ConfigError, Settings
from govtrust.errors import GovtrustError
from govtrust.instance import NoInstance

# Command groups contributed by each area, in the order ``--help`` lists them.
COMMAND_GROUPS: tuple[ModuleType, ...] = (
    identity,
    ca,
    service,
    oidc,
    seal,
    license,
    verify,
    audit,
    reencrypt,
)


def serve_settings(args: argparse.Namespace) -> Settings:
    """The settings ``govtrust serve`` with ``args`` runs with."""
    return settings_from_args(
        args,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        workers=args.workers,
        migrate=False if args.no_migrate else None,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Run gRPC and HTTP in one process (or N workers sharing both ports)."""
    settings = serve_settings(args)
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

    for group in COMMAND_GROUPS:
        group.register(commands)
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
