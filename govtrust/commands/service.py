"""``govtrust service …``: service identities of business systems (an admin's gRPC client).

A business system calls govtrust over mTLS with a certificate of the ``service`` CA whose system
id (CN) names a registered service identity; the identity's roles are what the calls may do.

* ``register NAME --role R…`` registers an identity; ``roles NAME --role R…`` replaces its roles;
* ``disable NAME --reason …`` / ``enable NAME --reason …`` switch its roles off and on;
* ``list`` and ``show NAME`` print identities (name, status, roles).

Each calls ``IdentityService`` on ``--server`` (default 127.0.0.1:50051; the embedded default's
loopback caller is admin, else ``--token`` with an admin's bearer token).
"""

from __future__ import annotations

import argparse
from typing import Any

from govtrust.commands import EXIT_OK
from govtrust.commands.ca import DEFAULT_SERVER


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    from govtrust.commands import call_rpc
    from govtrust.v1 import identity_pb2_grpc

    stub = identity_pb2_grpc.IdentityServiceStub
    return call_rpc(args, stub, method, request, "govtrust service")


def _print(identity: Any) -> None:
    from govtrust.v1 import identity_pb2

    status = identity_pb2.ServiceIdentityStatus.Name(identity.status)
    line = f"{identity.name}\t{status.removeprefix('SERVICE_IDENTITY_STATUS_').lower()}"
    line += f"\t{','.join(identity.roles) or '-'}"
    if identity.status_reason:
        line += f"\treason={identity.status_reason}"
    print(line)


def cmd_register(args: argparse.Namespace) -> int:
    """Register a service identity with roles."""
    from govtrust.v1 import identity_pb2

    request = identity_pb2.RegisterServiceIdentityRequest(name=args.name, roles=args.role or [])
    _print(_call(args, "RegisterServiceIdentity", request).service_identity)
    return EXIT_OK


def cmd_roles(args: argparse.Namespace) -> int:
    """Replace the roles of a service identity."""
    from govtrust.v1 import identity_pb2

    request = identity_pb2.UpdateServiceIdentityRolesRequest(name=args.name, roles=args.role or [])
    _print(_call(args, "UpdateServiceIdentityRoles", request).service_identity)
    return EXIT_OK


def cmd_disable(args: argparse.Namespace) -> int:
    """Disable a service identity."""
    from govtrust.v1 import identity_pb2

    request = identity_pb2.DisableServiceIdentityRequest(name=args.name, reason=args.reason)
    _print(_call(args, "DisableServiceIdentity", request).service_identity)
    return EXIT_OK


def cmd_enable(args: argparse.Namespace) -> int:
    """Re-enable a service identity."""
    from govtrust.v1 import identity_pb2

    request = identity_pb2.EnableServiceIdentityRequest(name=args.name, reason=args.reason)
    _print(_call(args, "EnableServiceIdentity", request).service_identity)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """Print one service identity."""
    from govtrust.v1 import identity_pb2

    request = identity_pb2.GetServiceIdentityRequest(name=args.name)
    _print(_call(args, "GetServiceIdentity", request).service_identity)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """Print every service identity (all pages)."""
    from govtrust.v1 import identity_pb2

    token = ""
    while True:
        request = identity_pb2.ListServiceIdentitiesRequest(
            page_token=token, active_only=args.active_only
        )
        response = _call(args, "ListServiceIdentities", request)
        for identity in response.service_identities:
            _print(identity)
        token = response.next_page_token
        if not token:
            return EXIT_OK


def register(commands: Any) -> None:
    """Add ``govtrust service …`` to the command tree."""
    service = commands.add_parser(
        "service", help="service identities: business systems calling over mTLS, and their roles"
    )
    sub = service.add_subparsers(dest="service_command", metavar="COMMAND", required=True)

    def parser(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        p.add_argument("--server", default=DEFAULT_SERVER, help=f"gRPC address ({DEFAULT_SERVER})")
        p.add_argument("--token", default=None, help="admin bearer token (or GOVTRUST_TOKEN)")
        p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        p.set_defaults(handler=handler)
        return p

    def named(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("name", help="the system id its service certificates name (their CN)")
        return p

    for name, text, handler in (
        ("register", "register a service identity with roles", cmd_register),
        ("roles", "replace the roles of a service identity", cmd_roles),
    ):
        named(parser(name, text, handler)).add_argument(
            "--role", action="append", help="a govtrust role, e.g. verifier (repeatable)"
        )
    for name, text, handler in (
        (
            "disable",
            "disable a service identity (its certificates then carry no roles)",
            cmd_disable,
        ),
        ("enable", "re-enable a disabled service identity", cmd_enable),
    ):
        named(parser(name, text, handler)).add_argument(
            "--reason", required=True, help="why (recorded in the audit log)"
        )
    named(parser("show", "print one service identity", cmd_show))
    parser("list", "print the service identities", cmd_list).add_argument(
        "--active-only", action="store_true", help="leave out disabled identities"
    )
