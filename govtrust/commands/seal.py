"""``govtrust seal …``: the seal lifecycle for administrators, as a gRPC client of SealService.

Examples::

    govtrust seal apply --owner-uscc 91350100M000100Y43 --kind contract --reason "new desk"
    govtrust seal review SEAL_ID --approve --reason ok
    govtrust seal make SEAL_ID && govtrust seal file SEAL_ID && govtrust seal issue SEAL_ID

Separation of duties holds here too: ``apply`` needs the owner's representative's (or an
agent's) token, and the reviewer's token may not ``make`` the seal it approved, so each step
runs with its own ``--token`` (docs/seals.md).
    govtrust seal suspend SEAL_ID --cause loss --reason "card lost"
    govtrust seal history SEAL_ID --uses
    govtrust seal image SEAL_ID -o seal.png

The server is ``--server`` (default 127.0.0.1:50051); the embedded default accepts loopback
without TLS; elsewhere pass a bearer token with ``--token`` or ``GOVTRUST_TOKEN``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from govtrust.commands import EXIT_OK

_KINDS = ("official", "finance", "contract", "invoice", "business", "personal_name")


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    from govtrust.commands import call_rpc
    from govtrust.v1 import seal_pb2_grpc

    return call_rpc(args, seal_pb2_grpc.SealServiceStub, method, request, "govtrust seal")


def _print_seal(seal: Any) -> None:
    from govtrust.v1 import common_pb2

    status = common_pb2.SealStatus.Name(seal.status).removeprefix("SEAL_STATUS_").lower()
    kind = common_pb2.SealKind.Name(seal.kind).removeprefix("SEAL_KIND_").lower()
    print(
        f"{seal.id}\t{status}\t{kind}\t{seal.name}\towner={seal.owner.id}"
        + (f"\tfiling={seal.filing_number}" if seal.filing_number else "")
        + (f"\treplaced_by={seal.replaced_by_seal_id}" if seal.replaced_by_seal_id else "")
    )


def _owner(args: argparse.Namespace) -> Any:
    from govtrust.v1 import common_pb2

    if args.owner_uscc:
        return common_pb2.IdentityRef(uscc=args.owner_uscc)
    if args.owner_id_number:
        return common_pb2.IdentityRef(resident_id_number=args.owner_id_number)
    return common_pb2.IdentityRef(id=args.owner)


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply for a seal."""
    from govtrust.v1 import common_pb2, seal_pb2

    request = seal_pb2.ApplySealRequest(
        owner=_owner(args),
        kind=getattr(common_pb2, f"SEAL_KIND_{args.kind.upper()}"),
        name=args.name,
        business_number=args.number,
        taxpayer_number=args.taxpayer_number,
        reason=args.reason,
    )
    _print_seal(_call(args, "ApplySeal", request).seal)
    return EXIT_OK


def _simple(
    method: str, build: Callable[[argparse.Namespace], Any]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        response = _call(args, method, build(args))
        if hasattr(response, "old_seal"):
            _print_seal(response.old_seal)
            _print_seal(response.new_seal)
        else:
            _print_seal(response.seal)
        return EXIT_OK

    run.__doc__ = f"Call {method}."
    return run


def cmd_history(args: argparse.Namespace) -> int:
    """Print a seal's history, oldest first."""
    from govtrust.v1 import seal_pb2

    token = ""
    while True:
        response = _call(
            args,
            "GetSealHistory",
            seal_pb2.GetSealHistoryRequest(
                seal_id=args.seal_id, include_uses=args.uses, page_token=token
            ),
        )
        for event in response.events:
            action = seal_pb2.SealAction.Name(event.action).removeprefix("SEAL_ACTION_").lower()
            when = event.occurred_at.ToDatetime().isoformat(timespec="seconds")
            digest = event.document_digest.value.hex() if event.document_digest.value else ""
            print(
                f"{event.sequence}\t{when}Z\t{action}\t{event.principal}\t{event.role}\t"
                f"{event.reason}\t{digest}"
            )
        token = response.next_page_token
        if not token:
            return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """List seals (optionally of one owner)."""
    from govtrust.v1 import common_pb2, seal_pb2

    request = seal_pb2.ListSealsRequest()
    if args.owner or args.owner_uscc or args.owner_id_number:
        request.owner.CopyFrom(_owner(args))
    token = ""
    while True:
        request.page_token = token
        response = _call(args, "ListSeals", request)
        for seal in response.seals:
            _print_seal(seal)
        token = response.next_page_token
        if not token:
            return EXIT_OK
    _ = common_pb2


def cmd_image(args: argparse.Namespace) -> int:
    """Write the seal's picture (PNG or SVG) to a file."""
    from govtrust.v1 import seal_pb2

    fmt = seal_pb2.IMAGE_FORMAT_SVG if args.output.suffix == ".svg" else seal_pb2.IMAGE_FORMAT_PNG
    response = _call(
        args,
        "GetSealImage",
        seal_pb2.GetSealImageRequest(seal_id=args.seal_id, format=fmt, dpi=args.dpi),
    )
    args.output.write_bytes(response.image)
    print(f"wrote {args.output} ({response.width_mm}x{response.height_mm} mm)")
    return EXIT_OK


def register(commands: Any) -> None:
    """Add ``seal`` and its subcommands to the ``govtrust`` command tree."""
    from govtrust.v1 import seal_pb2

    seal = commands.add_parser("seal", help="e-seal lifecycle (administrators)")
    sub = seal.add_subparsers(dest="seal_command", metavar="COMMAND", required=True)

    def parser(
        name: str,
        help_text: str,
        handler: Callable[[argparse.Namespace], int],
        *,
        seal_id: bool = True,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        p.add_argument("--server", default="127.0.0.1:50051", help="gRPC address")
        p.add_argument("--token", default="", help="bearer token (or GOVTRUST_TOKEN)")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds")
        if seal_id:
            p.add_argument("seal_id", help="the seal's id")
        p.set_defaults(handler=handler)
        return p

    def owner_args(p: argparse.ArgumentParser, required: bool) -> None:
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument("--owner", default="", help="owner's registry id")
        group.add_argument("--owner-uscc", default="", help="owner's USCC")
        group.add_argument("--owner-id-number", default="", help="owner's resident ID number")

    p = parser("apply", "apply for a seal", cmd_apply, seal_id=False)
    owner_args(p, True)
    p.add_argument("--kind", choices=_KINDS, required=True)
    p.add_argument("--name", default="", help="text on the seal (default: from the owner)")
    p.add_argument("--number", default="", help="business seal number")
    p.add_argument("--taxpayer-number", default="", help="invoice seal taxpayer number")
    p.add_argument("--reason", default="")

    p = parser(
        "review",
        "approve or reject an application",
        _simple(
            "ReviewSeal",
            lambda a: seal_pb2.ReviewSealRequest(
                seal_id=a.seal_id,
                reason=a.reason,
                decision=seal_pb2.REVIEW_DECISION_APPROVE
                if a.approve
                else seal_pb2.REVIEW_DECISION_REJECT,
            ),
        ),
    )
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true")
    decision.add_argument("--reject", action="store_true")
    p.add_argument("--reason", default="")

    p = parser(
        "make",
        "make an approved seal (key, certificate, picture, SESeal)",
        _simple("MakeSeal", lambda a: seal_pb2.MakeSealRequest(seal_id=a.seal_id, reason=a.reason)),
    )
    p.add_argument("--reason", default="")
    p = parser(
        "file",
        "file a made seal (备案)",
        _simple(
            "FileSeal",
            lambda a: seal_pb2.FileSealRequest(
                seal_id=a.seal_id, filing_number=a.filing_number, reason=a.reason
            ),
        ),
    )
    p.add_argument("--filing-number", default="")
    p.add_argument("--reason", default="")
    p = parser(
        "issue",
        "issue a filed seal to its owner",
        _simple(
            "IssueSeal", lambda a: seal_pb2.IssueSealRequest(seal_id=a.seal_id, reason=a.reason)
        ),
    )
    p.add_argument("--reason", default="")
    causes = {"loss": 1, "owner_request": 2, "suspected_compromise": 3, "administrative": 4}
    p = parser(
        "suspend",
        "suspend (挂失/停用); the certificate goes on hold",
        _simple(
            "SuspendSeal",
            lambda a: seal_pb2.SuspendSealRequest(
                seal_id=a.seal_id,
                cause=causes[a.cause],  # type: ignore[arg-type]
                reason=a.reason,
            ),
        ),
    )
    p.add_argument("--cause", choices=sorted(causes), default="owner_request")
    p.add_argument("--reason", required=True)

    def with_reason(cls: Any) -> Callable[[argparse.Namespace], Any]:
        return lambda a: cls(seal_id=a.seal_id, reason=a.reason)

    for name, method, cls, help_text in (
        ("resume", "ResumeSeal", seal_pb2.ResumeSealRequest, "resume a suspended seal"),
        ("revoke", "RevokeSeal", seal_pb2.RevokeSealRequest, "revoke (注销) a seal"),
        ("destroy", "DestroySeal", seal_pb2.DestroySealRequest, "destroy a revoked seal's key"),
    ):
        p = parser(name, help_text, _simple(method, with_reason(cls)))
        p.add_argument("--reason", required=True)
    remake_causes = {"loss": 1, "key_compromise": 2, "information_change": 3}
    p = parser(
        "remake",
        "re-make a lost or compromised seal",
        _simple(
            "RemakeSeal",
            lambda a: seal_pb2.RemakeSealRequest(
                seal_id=a.seal_id,
                cause=remake_causes[a.cause],  # type: ignore[arg-type]
                reason=a.reason,
                name=a.name,
            ),
        ),
    )
    p.add_argument("--cause", choices=sorted(remake_causes), default="loss")
    p.add_argument("--reason", required=True)
    p.add_argument("--name", default="")
    p = parser(
        "show",
        "show one seal",
        _simple("GetSeal", lambda a: seal_pb2.GetSealRequest(seal_id=a.seal_id)),
    )
    p = parser("list", "list seals", cmd_list, seal_id=False)
    owner_args(p, False)
    p = parser("history", "a seal's history", cmd_history)
    p.add_argument("--uses", action="store_true", help="include SealPdf/SignData uses")
    p = parser("image", "write the seal's picture", cmd_image)
    p.add_argument("-o", "--output", type=Path, required=True, help=".png or .svg")
    p.add_argument("--dpi", type=int, default=300)
