"""CheckCitizen throughput and latency over gRPC against a registry of 100,000 citizens.

1. Bulk-loads N citizens (default 100,000) into a fresh SQLite data directory, encrypting each
   ID number and computing its blind index exactly as the registry does.
2. Starts the real server, ``govtrust serve --workers 2`` on free ports, as a subprocess (plain
   loopback, so calls run as the local admin), and waits for gRPC health SERVING.
3. Drives CheckCitizen with nghttp2's ``h2load`` (the default when installed: a C load generator,
   so the clients take little of the two cores; ``make bench`` installs it) — one pre-encoded
   request for one registered citizen, checked to answer MATCH before and after, with the
   server's own count of failed calls required to stay unchanged — or, with ``--load python``,
   with grpc.aio client processes over several channels each, every call checking a random
   citizen (those clients cost as much CPU as the server, so that figure is a lower bound).
4. Prints calls/s and p50/p90/p99 latency; exits 1 below the target (issue 3: ≥ 3,000 calls/s
   on the 2-core machine with ``--workers 2``).
5. Unless ``--no-peer``, measures two no-op peers in as many processes, same load: a grpc.aio
   server and a synchronous grpc server (thread pool of 8), and prints CheckCitizen's rate as a
   ratio to each (issue 21's target: ≥ 0.8× the synchronous one).

Run: ``.venv/bin/python bench/identity.py [--citizens 100000] [--seconds 10]``
``[--load h2load|python]``.
Clients and server share the machine's cores, so the figure is a lower bound of the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_CALLS_PER_SECOND = 3000.0
ClientResult = tuple[list[float], int, int, int, float]
REGIONS = ("350102", "350103", "350104", "350105", "350111", "110105", "310104", "440305")


def citizen(i: int) -> tuple[str, str]:
    """The ``i``-th bench citizen: (name, resident ID number), distinct for every ``i``."""
    from idp.identifiers import resident_id_check_digit

    region = REGIONS[i % len(REGIONS)]
    birth = date(1950, 1, 1) + timedelta(days=i // (1000 * len(REGIONS)) * 37 + i % 97)
    first17 = f"{region}{birth:%Y%m%d}{(i // len(REGIONS)) % 1000:03d}"
    return f"居民{i:06d}", first17 + resident_id_check_digit(first17)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bulk_load(data_dir: Path, master_key_b64: str, count: int) -> float:
    """Insert ``count`` citizens with Core executemany in one transaction; return seconds."""
    from sqlalchemy import insert

    from govtrust.db import Database, sqlite_url
    from govtrust.migrate import upgrade_to_head
    from hsm.master import MasterKey
    from idp.models import CitizenRow, IdentityRow
    from idp.names import name_key
    from idp.pii import PURPOSE_ID_NUMBER, PiiCodec, mask_id_number

    started = time.perf_counter()
    db = Database(sqlite_url(data_dir))
    upgrade_to_head(db.engine)
    codec = PiiCodec.from_master_key(MasterKey.from_base64(master_key_b64))
    now = datetime.now(UTC)
    seen: set[str] = set()
    with db.engine.begin() as connection:
        for start in range(0, count, 5000):
            identities: list[dict[str, Any]] = []
            citizens: list[dict[str, Any]] = []
            for i in range(start, min(start + 5000, count)):
                name, number = citizen(i)
                assert number not in seen
                seen.add(number)
                cid = f"cit_bench{i:08d}"
                identities.append(
                    {
                        "id": cid,
                        "kind": "citizen",
                        "name": name,
                        "name_key": name_key(name),
                        "masked_identifier": mask_id_number(number),
                        "status": "active",
                        "status_reason": "",
                        "assurance_level": 2,
                        "assurance_source": "base_data",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                citizens.append(
                    {
                        "id": cid,
                        "id_number_index": codec.blind_index(number, PURPOSE_ID_NUMBER),
                        "id_number_enc": codec.encrypt(number, PURPOSE_ID_NUMBER),
                        "birth_date": date(
                            int(number[6:10]), int(number[10:12]), int(number[12:14])
                        ),
                        "sex": "male" if int(number[16]) % 2 else "female",
                        "region_code": number[:6],
                        "phone_index": None,
                        "phone_enc": None,
                        "masked_phone": "",
                        "email": "",
                    }
                )
            connection.execute(insert(IdentityRow), identities)
            connection.execute(insert(CitizenRow), citizens)
    db.dispose()
    return time.perf_counter() - started


def start_server(
    data_dir: Path, env: dict[str, str], workers: int
) -> tuple[subprocess.Popen[bytes], str, int]:
    """``govtrust serve`` on free ports; returns once gRPC health answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    grpc_port, http_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "govtrust", "serve", "--data-dir", str(data_dir),
        "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--workers", str(workers),
    ]  # fmt: skip
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{grpc_port}"
    deadline = time.monotonic() + 90
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise SystemExit(
                    f"govtrust serve exited with {process.returncode}:\n"
                    + (data_dir / "server.log").read_text(errors="replace")[-3000:]
                )
            try:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service="govtrust.v1.IdentityService"),
                    timeout=1,
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return process, address, http_port
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit("govtrust serve did not become SERVING within 90 s")
            time.sleep(0.2)


def worker_pids(supervisor: int) -> list[int]:
    """The serving processes: the supervisor's children (or itself with one worker)."""
    children: list[int] = []
    for task in Path(f"/proc/{supervisor}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        children.extend(int(p) for p in text.split())
    return children or [supervisor]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def stop_server(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


async def _client(
    address: str,
    citizens: int,
    seconds: float,
    warmup: float,
    channels: int,
    inflight: int,
    seed: int,
) -> ClientResult:
    import grpc
    import grpc.aio

    from govtrust.v1 import identity_pb2

    # Requests are serialised once up front and sent as bytes through a generic unary-unary
    # callable (no protobuf work per call on the client), so the clients, which share the
    # machine's two cores with the server, spend as little CPU per call as the Python gRPC
    # client allows. Every call is still a real CheckCitizen with its own name and ID number,
    # and every response is parsed and must answer MATCH.
    rnd = random.Random(seed)
    requests: list[bytes] = []
    for i in rnd.sample(range(citizens), min(citizens, 20000)):
        name, number = citizen(i)
        request = identity_pb2.CheckCitizenRequest(name=name, id_number=number)
        requests.append(request.SerializeToString())
    options = [("grpc.use_local_subchannel_pool", 1)]
    opened = [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]
    check_citizen = [
        c.unary_unary("/govtrust.v1.IdentityService/CheckCitizen", None, None) for c in opened
    ]
    parse = identity_pb2.CheckCitizenResponse.FromString
    match = identity_pb2.CHECK_RESULT_MATCH
    latencies: list[float] = []
    errors = 0
    mismatches = 0
    calls = 0
    begin = time.perf_counter()
    measure_from = begin + warmup
    stop_at = measure_from + seconds

    async def worker(k: int) -> None:
        nonlocal errors, mismatches, calls
        call = check_citizen[k % len(check_citizen)]
        j = k
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            request = requests[j % len(requests)]
            j += inflight
            calls += 1
            try:
                reply = await call(request, timeout=10)
            except grpc.RpcError:
                errors += 1
                continue
            if parse(reply).result != match:
                mismatches += 1
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                latencies.append(t1 - t0)

    cpu_before = time.process_time()
    await asyncio.gather(*(worker(k) for k in range(inflight)))
    cpu = time.process_time() - cpu_before
    for channel in opened:
        await channel.close(None)
    return latencies, errors, mismatches, calls, cpu


def client_process(
    args: tuple[str, int, float, float, int, int, int],
) -> ClientResult:
    """One client process (spawned): latencies, errors, non-MATCH answers, calls, CPU s."""
    return asyncio.run(_client(*args))


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


@dataclass
class Measurement:
    """What one load run saw."""

    rate: float
    latencies: list[float]
    errors: int
    mismatches: int
    server_us: float
    client_us: float


def measure(address: str, server_pids: list[int], args: argparse.Namespace) -> Measurement:
    """Run the client processes against ``address`` and account for every process's CPU."""
    jobs = [
        (address, args.citizens, args.seconds, args.warmup, args.channels, args.inflight, seed)
        for seed in range(args.clients)
    ]
    context = multiprocessing.get_context("spawn")
    server_cpu = -cpu_seconds(server_pids)
    with context.Pool(args.clients) as pool:
        results = pool.map(client_process, jobs)
    server_cpu += cpu_seconds(server_pids)
    latencies = sorted(x for r in results for x in r[0])
    calls = max(1, sum(r[3] for r in results))
    return Measurement(
        rate=len(latencies) / args.seconds,
        latencies=latencies,
        errors=sum(r[1] for r in results),
        mismatches=sum(r[2] for r in results),
        server_us=server_cpu / calls * 1e6,
        client_us=sum(r[4] for r in results) / calls * 1e6,
    )


def measure_h2load(
    address: str, http_port: int | None, server_pids: list[int], args: argparse.Namespace
) -> Measurement:
    """Drive CheckCitizen with ``h2load``: one pre-encoded request for one registered citizen.
    h2load cannot read gRPC trailers, so the server's own count of failed calls must not grow
    (govtrust; the peer has no /metrics) and a grpc client checks that the same request
    answers MATCH before and after."""
    import grpc

    from bench._h2load import grpc_counts, run_unary
    from govtrust.v1 import identity_pb2, identity_pb2_grpc

    name, number = citizen(args.citizens // 2)
    request = identity_pb2.CheckCitizenRequest(name=name, id_number=number)

    def matches() -> bool:
        with grpc.insecure_channel(address) as channel:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            reply = stub.CheckCitizen(request, timeout=10)
            return bool(reply.result == identity_pb2.CHECK_RESULT_MATCH)

    def counts() -> tuple[int, int]:
        return grpc_counts(http_port, "CheckCitizen") if http_port is not None else (0, 0)

    mismatches = 0 if matches() else 1
    ok_before, failed_before = counts()
    server_cpu = -cpu_seconds(server_pids)
    started = time.perf_counter()
    run = run_unary(
        address,
        "/govtrust.v1.IdentityService/CheckCitizen",
        request.SerializeToString(),
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        streams=args.inflight * args.clients // args.connections,
        latencies=True,
    )
    elapsed = time.perf_counter() - started
    server_cpu += cpu_seconds(server_pids)
    ok_after, failed_after = counts()
    mismatches += 0 if matches() else 1
    errors = run.http_errors + (failed_after - failed_before) + (run.returncode != 0)
    # The server's CPU covers the warm-up too: divide by every call it served in that time.
    served = ok_after - ok_before - 1 if http_port is not None else 0
    if served <= 0:
        served = round(run.completed * elapsed / args.seconds)
    return Measurement(
        rate=run.completed / args.seconds,
        latencies=run.latencies,
        errors=errors,
        mismatches=mismatches,
        server_us=server_cpu / max(1, served) * 1e6,
        client_us=0.0,
    )


def report(label: str, m: Measurement, workers: int) -> None:
    """Print one measurement."""
    print(f"{label}:")
    print(f"  {m.rate:,.0f} calls/s")
    if m.latencies:
        print(
            f"  latency p50 {percentile(m.latencies, 0.50) * 1000:.2f} ms   "
            f"p90 {percentile(m.latencies, 0.90) * 1000:.2f} ms   "
            f"p99 {percentile(m.latencies, 0.99) * 1000:.2f} ms   "
            f"mean {statistics.fmean(m.latencies) * 1000:.2f} ms"
        )
    print(
        f"  CPU per call: server {m.server_us:.0f} us, clients {m.client_us:.0f} us "
        f"(server-only capacity on {workers} dedicated cores: "
        f"{workers / max(m.server_us, 1e-3) * 1e6:,.0f} calls/s)"
    )
    print(f"  errors {m.errors}, non-MATCH answers {m.mismatches}")


class _NoOpServicer:
    """The peer: answers MATCH without doing anything (the Python gRPC ceiling)."""

    async def CheckCitizen(self, request: Any, context: Any) -> Any:  # noqa: N802
        from govtrust.v1 import identity_pb2

        return identity_pb2.CheckCitizenResponse(result=identity_pb2.CHECK_RESULT_MATCH)


def peer_process(port: int, ready: Any) -> None:
    """One no-op grpc.aio server process sharing ``port`` (SO_REUSEPORT), like a worker."""
    import grpc.aio

    from govtrust.v1 import identity_pb2_grpc

    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        servicer = type("Peer", (_NoOpServicer, identity_pb2_grpc.IdentityServiceServicer), {})
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(run())


def sync_peer_process(port: int, ready: Any) -> None:
    """One no-op synchronous grpc server process (thread pool of 8, SO_REUSEPORT): the
    transport's limit the issue-21 ratios are taken against."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from govtrust.v1 import identity_pb2, identity_pb2_grpc

    answer = identity_pb2.CheckCitizenResponse(result=identity_pb2.CHECK_RESULT_MATCH)

    class Peer(identity_pb2_grpc.IdentityServiceServicer):
        def CheckCitizen(self, request: Any, context: Any) -> Any:  # noqa: N802
            return answer

    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 1)])
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(Peer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


def measure_peer(target: Any, args: argparse.Namespace) -> Measurement:
    """Start ``args.workers`` processes of ``target`` sharing one port and measure them."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    ready = [context.Event() for _ in range(args.workers)]
    peers = [context.Process(target=target, args=(port, e)) for e in ready]
    for peer in peers:
        peer.start()
    for event in ready:
        event.wait(60)
    try:
        peer_pids = [p.pid for p in peers if p.pid]
        if args.load == "h2load":
            return measure_h2load(f"127.0.0.1:{port}", None, peer_pids, args)
        return measure(f"127.0.0.1:{port}", peer_pids, args)
    finally:
        for peer in peers:
            peer.kill()
            peer.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citizens", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="govtrust serve --workers")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--channels", type=int, default=4, help="channels per client process")
    parser.add_argument("--inflight", type=int, default=64, help="calls in flight per client")
    parser.add_argument("--no-peer", action="store_true", help="skip the no-op gRPC peer run")
    parser.add_argument(
        "--load",
        choices=("h2load", "python"),
        default="h2load" if shutil.which("h2load") else "python",
        help="load generator: nghttp2's h2load (C, little CPU) or grpc.aio client processes",
    )
    parser.add_argument("--connections", type=int, default=16, help="h2load connections")
    parser.add_argument("--keep", action="store_true", help="keep the temp data directory")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="govtrust-bench-identity-"))
    data_dir = tmp / "var"
    data_dir.mkdir(mode=0o700)
    master_key_b64 = base64.b64encode(os.urandom(32)).decode()
    env = {**os.environ, "GOVTRUST_MASTER_KEY": master_key_b64, "GOVTRUST_LOG_LEVEL": "warning"}
    env.pop("GOVTRUST_DATABASE_URL", None)
    process = None
    try:
        loaded = bulk_load(data_dir, master_key_b64, args.citizens)
        print(f"loaded {args.citizens:,} citizens in {loaded:.1f} s (encrypted + blind-indexed)")
        process, address, http_port = start_server(data_dir, env, args.workers)
        print(f"govtrust serve --workers {args.workers} on {address}")
        if args.load == "h2load":
            ours = measure_h2load(address, http_port, worker_pids(process.pid), args)
        else:
            ours = measure(address, worker_pids(process.pid), args)
    finally:
        code = stop_server(process) if process is not None else None
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.load == "h2load":
        streams = max(1, args.inflight * args.clients // args.connections)
        shape = (
            f"h2load, {args.connections} connections x {streams} streams (one citizen's request)"
        )
    else:
        shape = f"{args.clients} client processes x {args.channels} channels x {args.inflight}"
    print(
        f"{shape} in flight, {args.seconds:.0f} s after {args.warmup:.0f} s warm-up; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (clients share the cores)"
    )
    report(
        f"CheckCitizen, govtrust serve --workers {args.workers}, {args.citizens:,} citizens",
        ours,
        args.workers,
    )
    print(f"  server exit code {code}; target >= {TARGET_CALLS_PER_SECOND:,.0f} calls/s")
    if not args.no_peer:
        peers = (
            ("no-op grpc.aio servicer", peer_process),
            ("no-op synchronous grpc servicer (8 threads)", sync_peer_process),
        )
        rates = {}
        for label, target in peers:
            theirs = measure_peer(target, args)
            report(f"peer: {label}, {args.workers} processes, no interceptor", theirs, args.workers)
            rates[label] = theirs.rate
        for label, rate in rates.items():
            print(f"  CheckCitizen at {ours.rate / max(rate, 1e-9):.2f}x the {label}")
        print("  (issue 21 target: >= 0.80x the no-op synchronous grpc servicer)")
    ok = ours.rate >= TARGET_CALLS_PER_SECOND and ours.errors == 0 and ours.mismatches == 0
    print("PASS" if ok else "BELOW TARGET" if ours.errors == ours.mismatches == 0 else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
