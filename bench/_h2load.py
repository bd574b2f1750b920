"""Driving a gRPC unary method with nghttp2's ``h2load`` (a C client: the cores go to the server).

Shared by the gRPC benches. h2load cannot read gRPC trailers, so callers check the answers by
other means: :func:`grpc_counts` reads the server's own per-method counters from ``/metrics``.
Not a bench of its own (the Makefile skips ``bench/_*.py``).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

COUNTER = "govtrust_grpc_server_handled_total{"


@dataclass(frozen=True)
class H2loadRun:
    """What one h2load run saw."""

    completed: int  # HTTP 2xx answers (gRPC status is in the trailers: see grpc_counts)
    http_errors: int  # 3xx, 4xx and 5xx answers
    latencies: list[float]  # seconds, sorted (empty unless asked for)
    returncode: int


def grpc_counts(http_port: int, method: str) -> tuple[int, int]:
    """(OK, failed) answers of ``method`` the server counted, summed over its workers. Calls
    h2load abandons when its time is up come back CANCELLED and are counted as neither."""
    url = f"http://127.0.0.1:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    ok = failed = 0.0
    seen = False
    for line in text.splitlines():
        if line.startswith(COUNTER) and f'grpc_method="{method}"' in line:
            seen = True
            value = float(line.rsplit(" ", 1)[1])
            if 'grpc_code="OK"' in line:
                ok += value
            elif 'grpc_code="CANCELLED"' not in line:
                failed += value
    if not seen:
        raise SystemExit(f"the server's /metrics has no {method} counter: cannot check errors")
    return int(ok), int(failed)


def run_unary(
    address: str,
    path: str,
    request: bytes,
    *,
    seconds: float,
    warmup: float,
    connections: int,
    streams: int,
    latencies: bool = False,
) -> H2loadRun:
    """POST one serialized request (gRPC framing added here) to ``path`` for ``seconds`` after
    ``warmup``, ``connections`` × ``streams`` calls in flight."""
    with tempfile.TemporaryDirectory(prefix="govtrust-h2load-") as tmp:
        body = Path(tmp) / "request.bin"
        body.write_bytes(b"\x00" + struct.pack(">I", len(request)) + request)
        log = Path(tmp) / "latency.log"
        command = [
            "h2load", "-D", f"{seconds:g}", "--warm-up-time", f"{warmup:g}",
            "-c", str(connections), "-m", str(max(1, streams)), "-t", "1", "-d", str(body),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            *(["--log-file", str(log)] if latencies else []),
            f"http://{address}{path}",
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=seconds + warmup + 120
        )
        done = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", result.stdout)
        if done is None or (latencies and not log.exists()):
            raise SystemExit(f"h2load failed ({result.returncode}): {result.stdout}{result.stderr}")
        measured: list[float] = []
        if latencies:
            for line in log.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1] == "200":
                    measured.append(int(parts[2]) / 1e6)
            measured.sort()
    others = sum(int(done.group(i)) for i in (2, 3, 4))
    return H2loadRun(int(done.group(1)), others, measured, result.returncode)


# --- server CPU (Linux /proc) ------------------------------------------------------------------


def child_pids(supervisor: int) -> list[int]:
    """The serving processes: the supervisor's children (or itself when it has none)."""
    children: list[int] = []
    for task in Path(f"/proc/{supervisor}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        children.extend(int(p) for p in text.split())
    return children or [supervisor]


def thread_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of ``pids``, split into ``main`` (each process's
    main thread: the event loop) and ``threads`` (every other thread: gRPC's poller and
    event engine, the audit writer, the log flusher, the thread pool)."""
    ticks = os.sysconf("SC_CLK_TCK")
    split = {"main": 0.0, "threads": 0.0}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds = (int(fields[11]) + int(fields[12])) / ticks
            split["main" if task.name == str(pid) else "threads"] += seconds
    return split
