"""One worker process: ``python -m govtrust.server.worker``, started by the supervisor.

The supervisor writes the ``Settings`` as JSON (ports already resolved, ``migrate=False``) to
the worker's stdin and passes a pipe on which the worker reports ``ready <grpc> <http>`` once both
servers listen. The worker then serves until SIGTERM/SIGINT (or its supervisor dies) and drains.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from govtrust.config import Settings
from govtrust.observability.logs import setup_logging
from govtrust.observability.metrics import enable_multiprocess, multiprocess_dir
from govtrust.server.process import BoundPorts, StartupError, run_process
from govtrust.server.startup import open_for_serving


def settings_to_json(settings: Settings) -> bytes:
    """Serialise resolved settings for a worker (paths as strings)."""
    values = {
        f.name: str(v) if isinstance(v := getattr(settings, f.name), Path) else v
        for f in dataclasses.fields(Settings)
    }
    return json.dumps(values).encode()


def settings_from_json(data: bytes) -> Settings:
    """The inverse of :func:`settings_to_json` (already validated by the supervisor)."""
    values = json.loads(data)
    if not isinstance(values, dict):
        raise ValueError("expected a JSON object")
    for f in dataclasses.fields(Settings):
        if "Path" in str(f.type) and values.get(f.name) is not None:
            values[f.name] = Path(values[f.name])
        if "tuple" in str(f.type) and isinstance(values.get(f.name), list):
            values[f.name] = tuple(values[f.name])  # JSON has arrays, Settings has tuples
    return Settings(**values)


def main(argv: list[str] | None = None) -> int:
    """Serve as worker ``--index`` until told to stop; exit code 0 after a clean drain."""
    parser = argparse.ArgumentParser(prog="govtrust-worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_json(sys.stdin.buffer.read())
    except (ValueError, TypeError) as exc:
        print(f"govtrust worker: no valid settings on stdin: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    directory = multiprocess_dir()
    if directory:
        enable_multiprocess(Path(directory))
    parent_pid = os.getppid()

    def on_ready(ports: BoundPorts) -> None:
        os.write(args.ready_fd, f"ready {ports.grpc_port} {ports.http_port}\n".encode())
        os.close(args.ready_fd)

    try:
        platform = open_for_serving(settings, migrate=False)
    except StartupError as exc:
        print(f"govtrust: worker {args.index} cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(
            run_process(
                settings, platform, reuse_port=True, on_ready=on_ready, parent_pid=parent_pid
            )
        )
    except StartupError as exc:
        print(f"govtrust: worker {args.index} cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        platform.close()


if __name__ == "__main__":
    sys.exit(main())
