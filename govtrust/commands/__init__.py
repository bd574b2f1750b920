"""CLI command groups, one module per area; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def call_rpc(
    args: argparse.Namespace, stub_class: Any, method: str, request: Any, prog: str
) -> Any:
    """Call ``method`` on ``args.server`` (plaintext gRPC) with ``args.token`` or
    ``GOVTRUST_TOKEN`` as bearer token; on an error print ``PROG: CODE: details`` and exit 1."""
    import grpc

    from govtrust.cli import rpc_error_message

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
