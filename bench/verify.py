"""VerifyService throughput beside its peers, measured in one run.

* **VerifyCertificate calls/s** over gRPC against ``govtrust serve --workers N`` (default 2) on a
  scratch data directory (SQLite WAL + soft key store): a seal certificate of our CA with its
  issuing CA as intermediate, judged now, revocation from our status store — beside
  ``openssl verify -CAfile root.pem -untrusted chain.pem`` on the same certificate. openssl is
  measured as ONE process verifying the same file listed ``--openssl-batch`` times (its
  per-certificate rate, process start-up amortised) with N such processes at once; the
  one-process-per-certificate rate (what a shell script calling it per document gets) is printed
  too, for information.
* **VerifyPdf calls/s** over gRPC on a one-page PDF with one seal (PAdES B-T from our TSA) —
  beside plain pyHanko ``validate_pdf_signature`` on the same bytes in N processes: with a fresh
  ``ValidationContext`` per call (same root, and our hierarchy as ``other_certs`` so the TSA's
  chain builds — what a naive integrator writes; the target's baseline) and, for honesty, with
  one reused context per process. pyHanko does no revocation check here (no fetching), while
  VerifyPdf also reads the seal registry and the CA's status store and writes an audit record.

The VerifyCertificate load comes from nghttp2's ``h2load`` when installed (``make bench``
installs it; a C client, one pre-encoded request, the verdict checked before and after and the
server's count of failed calls required not to grow), else — and always for VerifyPdf — from
``--clients`` processes (asyncio, ``--concurrency`` calls in flight each) on the same machine,
whose CPU is taken from the server's, so those figures are a lower bound.

h2load keeps ``--inflight`` calls in flight (128 on 16 connections, as ``bench/identity.py``)
and the server logs at ``--log-level`` (warning, as there). With h2load the bench also
reports the server's CPU per call (user + system of the worker processes from /proc, split into
the event-loop thread and the others) and, in the same run, the ceilings of the gRPC stack on
this machine, each answering VerifyCertificate with a stored real answer (the same bytes, no
work): ``govtrust serve`` itself with a no-op servicer (same interceptor, metrics, access log,
uvicorn on the loop — wired in by a bench-only ``sitecustomize``), a bare grpc.aio server in
``--workers`` processes (no interceptor), and a bare synchronous grpc server (thread pool) in as
many processes.

* **VerifyOfd calls/s** over gRPC (client-streamed: a header, then the package) on a one-page
  OFD sealed by SealOfd with the same SM2 seal (GB/T 38540 SM2 signature, SM2 time-stamp),
  printed beside VerifyPdf.

Targets (issue 8): VerifyCertificate ≥ 5,000/s, VerifyPdf ≥ 2× plain pyHanko (fresh context);
(issue 17) VerifyOfd ≥ 300/s with ``--workers 2``.
Exit status 1 when a target is missed.

Run: ``.venv/bin/python bench/verify.py [--seconds 5] [--workers 2] [--clients 2] [--no-pdf]
[--no-peers]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_CERT = 5000.0
TARGET_OFD = 300.0  # issue 17: OFD verifications/s with --workers 2
TARGET_PDF_RATIO = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def one_page_pdf() -> bytes:
    """A one-page A4 PDF with a line of Helvetica text."""
    from tests.seal.conftest import one_page_pdf as make

    return make("Contract No. 42 - seal below")


# --- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What the contenders verify (DER) and the files openssl reads."""

    cert: bytes
    chain: tuple[bytes, ...]  # issuing CA(s), root last
    hierarchy: tuple[bytes, ...]  # every CA / TSA / responder certificate of ours
    pdf: bytes
    files: dict[str, Path]
    ofd: bytes = b""


def prepare(data_dir: Path, work: Path) -> Inputs:
    """Bootstrap the data dir, make two active contract seals (P-256; SM2) and seal a one-page
    PDF (B-T) with the first and a one-page OFD with the second."""
    from cryptography import x509

    from bench.seal import one_page_ofd
    from ca.authority import authority_for
    from govtrust.config import Settings
    from govtrust.principal import Principal
    from govtrust.server.wiring import open_wired
    from idp.types import IdentityRef
    from seal.lifecycle import Application, Making
    from seal.ofd_seal import OfdSealRequest, SealOfd
    from seal.pdf import PdfSealRequest
    from seal.placement import Position
    from seal.runtime import runtime_for
    from seal.types import PadesLevel, SealKind
    from tests.seal.conftest import FILING, MAKER, REGISTRAR, REVIEWER, USCC, resident_id

    platform = open_wired(Settings(data_dir=data_dir))
    try:
        seals = runtime_for(platform)
        registry = seals.service.owners.registry  # type: ignore[attr-defined]
        rep_id = registry.register_citizen(
            REGISTRAR, name="张三", id_number=resident_id("11010519491231002")
        ).id
        company = registry.register_legal_person(
            REGISTRAR,
            uscc=USCC,
            name="福州示例科技有限公司",
            legal_representative=IdentityRef(id=rep_id),
        )
        rep = Principal("user", "rep", frozenset(), citizen_id=rep_id)
        service = seals.service
        made = []
        for algorithm in ("ec-p256", "sm2"):  # the certificate and PDF rows; the OFD row
            applied = service.apply(
                rep,
                Application(IdentityRef(id=company.id), SealKind.CONTRACT, key_algorithm=algorithm),
            )
            service.review(REVIEWER, applied.id, True, "ok")
            service.make(MAKER, applied.id, Making())
            service.file(FILING, applied.id, "", "")
            made.append(service.issue(FILING, applied.id, ""))
        seal, sm2_seal = made
        sealed = seals.pdf.seal(
            rep,
            PdfSealRequest(
                seal.id, one_page_pdf(), Position(1, 100, 100), PadesLevel.B_T, "contract"
            ),
        ).sealed_pdf
        ofd = (
            SealOfd(service)
            .seal(rep, OfdSealRequest(sm2_seal.id, one_page_ofd(), Position(1, 100, 100)))
            .sealed.ofd
        )
        assert seal.certificate_der is not None
        authority = authority_for(platform)
        chain = tuple(i.der for i in authority.issuing_chain("seal"))  # seal CA …, root last
        hierarchy = tuple(i.der for i in authority.chain(include_responders=True))
        cert = seal.certificate_der
    finally:
        platform.close()

    def pem(der: bytes) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)

    files = {
        "root": work / "root.pem",
        "chain": work / "chain.pem",
        "cert": work / "cert.pem",
    }
    files["root"].write_bytes(pem(chain[-1]))
    files["chain"].write_bytes(b"".join(pem(d) for d in chain[:-1]))
    files["cert"].write_bytes(pem(cert))
    return Inputs(cert, chain, hierarchy, sealed, files, ofd)


# --- the server -----------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[str]
    grpc: str
    http_port: int = 0


NOOP_HOOK = (
    "# bench only (bench/verify.py): VerifyCertificate answers a stored response, no work\n"
    "import os\n"
    "if os.environ.get('GOVTRUST_BENCH_NOOP_RESPONSE'):\n"
    "    from govtrust.api import verify as _verify\n"
    "    from govtrust.v1 import verify_pb2 as _pb\n"
    "    _answer = _pb.VerifyCertificateResponse.FromString(\n"
    "        bytes.fromhex(os.environ['GOVTRUST_BENCH_NOOP_RESPONSE'])\n"
    "    )\n"
    "\n"
    "    async def _noop(self, request, context):\n"
    "        return _answer\n"
    "\n"
    "    _verify.VerifyServicer.VerifyCertificate = _noop\n"
)


def start_server(
    data_dir: Path, workers: int, log_level: str = "", noop_response: bytes | None = None
) -> Server:
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if log_level:
        env["GOVTRUST_LOG_LEVEL"] = log_level
    if noop_response is not None:
        hook = data_dir.parent / "noop-hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(NOOP_HOOK)
        env["PYTHONPATH"] = f"{REPO}{os.pathsep}{hook}"
        env["GOVTRUST_BENCH_NOOP_RESPONSE"] = noop_response.hex()
    env.pop("GOVTRUST_CONFIG", None)
    env.pop("GOVTRUST_DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "govtrust",
        "serve",
        "--data-dir",
        str(data_dir),
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(REPO),
    )
    deadline = time.monotonic() + 90
    lines: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("govtrust: http listening on"):
            threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
            return Server(process, f"127.0.0.1:{grpc_port}", http_port)
    process.kill()
    raise SystemExit("govtrust serve did not start:\n" + "".join(lines))


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()


# --- gRPC load ------------------------------------------------------------------------------------


CHANNELS_PER_CLIENT = 4


async def _streamed(call: Any, parts: tuple[Any, ...], _request: Any, timeout: float) -> Any:
    """One client-streamed call sending ``parts`` in order."""
    return await call(iter(parts), timeout=timeout)


def _client(
    address: str, kind: str, payload: bytes, chain: tuple[bytes, ...], seconds: float, conc: int
) -> tuple[int, int]:
    """One client process: (calls completed, calls whose verdict was not VALID)."""
    import grpc

    from govtrust.v1 import common_pb2, verify_pb2, verify_pb2_grpc

    async def run() -> tuple[int, int]:
        # Several connections per client: the kernel spreads connections over the workers
        # (SO_REUSEPORT) by a hash, so with one connection per client both clients landed on
        # the same worker about half the time and the other worker idled (VerifyPdf then read
        # ~110/s instead of ~220/s). A local subchannel pool per channel gives each its own
        # connection (channels to one target otherwise share one).
        options = [
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.use_local_subchannel_pool", 1),
        ]
        channels = [
            grpc.aio.insecure_channel(address, options=options) for _ in range(CHANNELS_PER_CLIENT)
        ]
        try:
            stubs = [verify_pb2_grpc.VerifyServiceStub(channel) for channel in channels]
            calls: list[Any]
            if kind == "cert":
                request: Any = verify_pb2.VerifyCertificateRequest(
                    certificate=payload, intermediates=list(chain)
                )
                calls = [stub.VerifyCertificate for stub in stubs]
            elif kind == "ofd":  # client-streamed: the header, then the package in one chunk
                header = verify_pb2.VerifyOfdRequest(
                    header=verify_pb2.VerifyOfdHeader(size_bytes=len(payload))
                )
                parts = (header, verify_pb2.VerifyOfdRequest(chunk=payload))
                calls = [functools.partial(_streamed, stub.VerifyOfd, parts) for stub in stubs]
                request = None
            else:
                request = verify_pb2.VerifyPdfRequest(pdf=payload)
                calls = [stub.VerifyPdf for stub in stubs]
            for index in range(conc):  # warm-up: connections, caches in each worker
                await calls[index % len(calls)](request, timeout=60)
            done = bad = 0
            deadline = time.perf_counter() + seconds

            async def loop(call: Any) -> None:
                nonlocal done, bad
                while time.perf_counter() < deadline:
                    response = await call(request, timeout=60)
                    done += 1
                    if response.report.verdict != common_pb2.VERDICT_VALID:
                        bad += 1

            await asyncio.gather(*(loop(calls[i % len(calls)]) for i in range(conc)))
            return done, bad
        finally:
            for channel in channels:
                await channel.close(None)

    return asyncio.run(run())


def grpc_rate(
    server: Server,
    kind: str,
    payload: bytes,
    chain: tuple[bytes, ...],
    seconds: float,
    clients: int,
    conc: int,
) -> tuple[float, int]:
    """Calls/s summed over ``clients`` processes, and the number of non-VALID answers."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(clients) as pool:
        started = time.perf_counter()
        results = pool.starmap(
            _client, [(server.grpc, kind, payload, chain, seconds, conc)] * clients
        )
        elapsed = time.perf_counter() - started
    done = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    # each client ran `seconds` after its warm-up; rate over the measured window
    return done / seconds if elapsed > 0 else 0.0, bad


@dataclass(frozen=True)
class Measured:
    """One h2load run: calls/s, answers that were not right, server CPU per call (µs)."""

    rate: float
    bad: int
    server_us: float
    main_us: float  # the event-loop threads' share
    threads_us: float  # every other thread's (gRPC poller/event engine, audit writer, logs)


def h2load_measure(
    address: str,
    request: bytes,
    pids: list[int],
    seconds: float,
    inflight: int,
    http_port: int = 0,
) -> Measured:
    """VerifyCertificate calls/s driven by ``h2load`` (a C client: the cores go to the server)
    and the CPU the server processes ``pids`` spent per call. A 2 s warm-up run comes first;
    the measured run has none, so every call the CPU paid for is counted. With ``http_port``
    (govtrust) the server's own count of failed VerifyCertificate calls must not grow."""
    from bench._h2load import grpc_counts, run_unary, thread_cpu

    method = "/govtrust.v1.VerifyService/VerifyCertificate"
    connections = 16
    shape = {"connections": connections, "streams": max(1, inflight // connections)}
    run_unary(address, method, request, seconds=2, warmup=0, **shape)  # type: ignore[arg-type]
    failed_before = grpc_counts(http_port, "VerifyCertificate")[1] if http_port else 0
    before = thread_cpu(pids)
    run = run_unary(address, method, request, seconds=seconds, warmup=0, **shape)  # type: ignore[arg-type]
    after = thread_cpu(pids)
    failed_after = grpc_counts(http_port, "VerifyCertificate")[1] if http_port else 0
    calls = max(1, run.completed)
    main = (after["main"] - before["main"]) / calls * 1e6
    threads = (after["threads"] - before["threads"]) / calls * 1e6
    bad = run.http_errors + (failed_after - failed_before) + (run.returncode != 0)
    return Measured(run.completed / seconds, bad, main + threads, main, threads)


def h2load_cert_rate(
    server: Server,
    payload: bytes,
    chain: tuple[bytes, ...],
    seconds: float,
    inflight: int,
    pids: list[int],
) -> tuple[Measured, bytes]:
    """VerifyCertificate over gRPC with h2load: one pre-encoded request; a grpc client checks
    it answers VALID before and after. Returns the measurement and one real answer (the
    peers' stored response)."""
    import grpc

    from govtrust.v1 import common_pb2, verify_pb2, verify_pb2_grpc

    request = verify_pb2.VerifyCertificateRequest(certificate=payload, intermediates=list(chain))

    def answer() -> verify_pb2.VerifyCertificateResponse:
        with grpc.insecure_channel(server.grpc) as channel:
            stub = verify_pb2_grpc.VerifyServiceStub(channel)
            reply: verify_pb2.VerifyCertificateResponse = stub.VerifyCertificate(
                request, timeout=30
            )
            return reply

    first = answer()
    bad = 0 if first.report.verdict == common_pb2.VERDICT_VALID else 1
    measured = h2load_measure(
        server.grpc, request.SerializeToString(), pids, seconds, inflight, server.http_port
    )
    bad += 0 if answer().report.verdict == common_pb2.VERDICT_VALID else 1
    return dataclasses.replace(measured, bad=measured.bad + bad), first.SerializeToString()


# --- gRPC ceilings: no-op peers -------------------------------------------------------------------


def _noop_aio(port: int, response: bytes, ready: Any) -> None:
    """One bare grpc.aio server process (SO_REUSEPORT, no interceptor) answering the stored
    response — like a worker, minus everything of ours."""
    import grpc.aio

    from govtrust.v1 import verify_pb2, verify_pb2_grpc

    answer = verify_pb2.VerifyCertificateResponse.FromString(response)

    class Peer(verify_pb2_grpc.VerifyServiceServicer):
        async def VerifyCertificate(self, request: Any, context: Any) -> Any:  # noqa: N802
            return answer

    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        verify_pb2_grpc.add_VerifyServiceServicer_to_server(Peer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(run())


def _noop_sync(port: int, response: bytes, ready: Any) -> None:
    """One bare synchronous grpc server process (thread pool of 8, SO_REUSEPORT)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from govtrust.v1 import verify_pb2, verify_pb2_grpc

    answer = verify_pb2.VerifyCertificateResponse.FromString(response)

    class Peer(verify_pb2_grpc.VerifyServiceServicer):
        def VerifyCertificate(self, request: Any, context: Any) -> Any:  # noqa: N802
            return answer

    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 1)])
    verify_pb2_grpc.add_VerifyServiceServicer_to_server(Peer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


def peer_measure(
    target: Any, workers: int, request: bytes, response: bytes, seconds: float, inflight: int
) -> Measured:
    """Start ``workers`` peer processes of ``target`` on one port and measure them."""
    context = multiprocessing.get_context("spawn")
    port = free_port()
    ready = [context.Event() for _ in range(workers)]
    peers = [context.Process(target=target, args=(port, response, e)) for e in ready]
    for peer in peers:
        peer.start()
    try:
        for event in ready:
            event.wait(60)
        pids = [p.pid for p in peers if p.pid]
        return h2load_measure(f"127.0.0.1:{port}", request, pids, seconds, inflight)
    finally:
        for peer in peers:
            peer.kill()
            peer.join()


# --- peers ----------------------------------------------------------------------------------------


def _pyhanko(pdf: bytes, roots: tuple[bytes, ...], others: tuple[bytes, ...], seconds: float,
             reuse: bool) -> tuple[int, int]:  # fmt: skip
    """Plain pyHanko in a fresh process (none of govtrust's code imported)."""
    import io
    import logging

    from asn1crypto import x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    logging.disable(logging.CRITICAL)
    trust = [x509.Certificate.load(d) for d in roots]
    other = [x509.Certificate.load(d) for d in others]
    shared = ValidationContext(trust_roots=trust, other_certs=other)

    def once() -> bool:
        context = shared if reuse else ValidationContext(trust_roots=trust, other_certs=other)
        reader = PdfFileReader(io.BytesIO(pdf))
        ok = True
        for sig in reader.embedded_signatures:
            status = validate_pdf_signature(sig, context)
            ok = ok and status.intact and status.valid and status.trusted
        return ok

    assert once(), "pyHanko does not accept the sealed PDF"
    done = bad = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        done += 1
        if not once():
            bad += 1
    return done, bad


def pyhanko_rate(inputs: Inputs, seconds: float, processes: int, reuse: bool) -> float:
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(
            _pyhanko,
            [(inputs.pdf, (inputs.chain[-1],), inputs.hierarchy, seconds, reuse)] * processes,
        )
    assert all(bad == 0 for _, bad in results)
    return sum(done for done, _ in results) / seconds


def openssl_rate(inputs: Inputs, batch: int, processes: int, work: Path) -> tuple[float, float]:
    """(certificates/s with ``processes`` batch processes, one-process-per-call rate)."""
    files = inputs.files
    base = [
        "openssl",
        "verify",
        "-CAfile",
        str(files["root"]),
        "-untrusted",
        str(files["chain"]),
    ]
    args = [*base, *[str(files["cert"])] * batch]
    check = subprocess.run([*base, str(files["cert"])], capture_output=True, text=True, check=False)
    assert check.returncode == 0 and ": OK" in check.stdout, check.stdout + check.stderr
    started = time.perf_counter()
    running = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    outputs = [p.communicate() for p in running]
    elapsed = time.perf_counter() - started
    for out, err in outputs:
        assert out.count(": OK") == batch, err
    batch_rate = processes * batch / elapsed
    singles = 20
    started = time.perf_counter()
    for _ in range(singles):
        subprocess.run([*base, str(files["cert"])], capture_output=True, check=True)
    single_rate = singles / (time.perf_counter() - started)
    return batch_rate, single_rate


# --- main -----------------------------------------------------------------------------------------


def _line(label: str, m: Measured, unit: str = "calls/s", note: str = "") -> None:
    print(
        f"  {label:<34}{m.rate:>9,.0f} {unit}   server CPU {m.server_us:>5,.0f} µs/call "
        f"(loop {m.main_us:,.0f} + threads {m.threads_us:,.0f}){note}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--clients", type=int, default=2, help="gRPC client processes")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight per client")
    parser.add_argument(
        "--inflight", type=int, default=128, help="h2load calls in flight (16 connections)"
    )
    parser.add_argument("--openssl-batch", type=int, default=20000, help="certs per openssl run")
    parser.add_argument(
        "--log-level", default="warning", help="the server's (as bench/identity.py; info: one "
        "access line per call)",
    )  # fmt: skip
    parser.add_argument("--no-pdf", action="store_true", help="skip VerifyPdf and pyHanko")
    parser.add_argument("--no-peers", action="store_true", help="skip the no-op gRPC ceilings")
    parser.add_argument(
        "--load",
        choices=("h2load", "python"),
        default="h2load" if shutil.which("h2load") else "python",
        help="VerifyCertificate load generator: h2load (C) or grpc.aio client processes",
    )
    args = parser.parse_args(argv)
    from bench._h2load import child_pids

    h2load = args.load == "h2load"
    cert: Measured | None = None
    peers: list[tuple[str, Measured]] = []
    pdf_rate = plain = reused = ofd_rate = 0.0
    pdf_bad = ofd_bad = 0
    with tempfile.TemporaryDirectory(prefix="govtrust-bench-verify-") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        print("preparing: CA, registry, one active seal, one sealed one-page PDF (B-T) ...")
        inputs = prepare(data_dir, work)
        print(f"  PDF {len(inputs.pdf):,} bytes; certificate chain depth {len(inputs.chain) + 1}")

        server = start_server(data_dir, args.workers, args.log_level)
        response = b""
        try:
            load = (
                f"h2load, {args.inflight} calls in flight"
                if h2load
                else f"{args.clients} client processes x {args.concurrency} in flight"
            )
            print(
                f"server: govtrust serve --workers {args.workers} (log level {args.log_level});"
                f" load: {load}, {args.seconds:g} s each"
            )
            if h2load:
                cert, response = h2load_cert_rate(
                    server, inputs.cert, inputs.chain[:-1], args.seconds, args.inflight,
                    child_pids(server.process.pid),
                )  # fmt: skip
                cert_rate, cert_bad = cert.rate, cert.bad
            else:
                cert_rate, cert_bad = grpc_rate(
                    server, "cert", inputs.cert, inputs.chain[:-1], args.seconds, args.clients,
                    args.concurrency,
                )  # fmt: skip
            if not args.no_pdf:
                pdf_rate, pdf_bad = grpc_rate(
                    server, "pdf", inputs.pdf, (), args.seconds, args.clients, args.concurrency
                )
                ofd_rate, ofd_bad = grpc_rate(
                    server, "ofd", inputs.ofd, (), args.seconds, args.clients, args.concurrency
                )
        finally:
            stop_server(server)
        if h2load and not args.no_peers:
            from govtrust.v1 import verify_pb2

            request = verify_pb2.VerifyCertificateRequest(
                certificate=inputs.cert, intermediates=list(inputs.chain[:-1])
            ).SerializeToString()
            noop = start_server(data_dir, args.workers, args.log_level, noop_response=response)
            try:
                pids = child_pids(noop.process.pid)
                measured = h2load_measure(
                    noop.grpc, request, pids, args.seconds, args.inflight, noop.http_port
                )
                peers.append(("govtrust serve, no-op servicer", measured))
            finally:
                stop_server(noop)
            for label, target in (
                ("bare grpc.aio, no interceptor", _noop_aio),
                ("bare sync grpc (8 threads)", _noop_sync),
            ):
                peers.append(
                    (
                        label,
                        peer_measure(
                            target, args.workers, request, response, args.seconds, args.inflight
                        ),
                    )
                )
        batch, single = openssl_rate(inputs, args.openssl_batch, args.workers, work)
        if not args.no_pdf:
            plain = pyhanko_rate(inputs, args.seconds, args.workers, reuse=False)
            reused = pyhanko_rate(inputs, args.seconds, args.workers, reuse=True)

    cert_ratio = cert_rate / batch if batch else 0.0
    pdf_ratio = pdf_rate / plain if plain else 0.0
    print()
    print(
        f"VerifyCertificate (seal certificate + issuing CA, revocation from our status store; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})"
    )
    if cert is not None:
        _line("govtrust gRPC", cert, note=f"   non-VALID/failed: {cert_bad}")
    else:
        print(f"  govtrust gRPC          {cert_rate:>10,.0f} calls/s   (non-VALID: {cert_bad})")
    if peers:
        print(f"  ceilings — {args.workers} processes answering a stored response, no work:")
        for label, measured in peers:
            share = f"   govtrust at {cert_rate / measured.rate:.0%}" if measured.rate else ""
            _line(label, measured, note=share)
        sync = peers[-1][1].rate  # the bare synchronous server: the transport's limit
        if sync:
            print(
                f"  ratios to the bare sync no-op server (issue 21 targets: VerifyCertificate"
                f" >= 0.7x, govtrust serve no-op >= 0.9x): VerifyCertificate "
                f"{cert_rate / sync:.2f}x; "
                + "; ".join(f"{label} {m.rate / sync:.2f}x" for label, m in peers[:-1])
            )
    print(
        f"  openssl verify         {batch:>10,.0f} certs/s   ({args.workers} processes, "
        f"{args.openssl_batch:,} certificates each)"
    )
    print(f"  openssl verify (1/proc){single:>10,.0f} calls/s   (one process per certificate)")
    print(f"  ratio govtrust/openssl {cert_ratio:>10.2f}")
    missed = []
    if cert_rate < TARGET_CERT:
        missed.append(f"VerifyCertificate {cert_rate:,.0f}/s < {TARGET_CERT:,.0f}/s")
    if not args.no_pdf:
        print("VerifyPdf (one page, one seal, PAdES B-T)")
        print(f"  govtrust gRPC          {pdf_rate:>10,.1f} calls/s   (non-VALID: {pdf_bad})")
        print(
            f"  pyHanko, fresh context {plain:>10,.1f} calls/s   ({args.workers} processes; "
            "target baseline)"
        )
        print(f"  pyHanko, reused ctx    {reused:>10,.1f} calls/s   ({args.workers} processes)")
        print(f"  ratio vs fresh         {pdf_ratio:>10.2f}   (target ≥ {TARGET_PDF_RATIO:g})")
        print(f"  ratio vs reused        {pdf_rate / reused if reused else 0.0:>10.2f}")
        if pdf_ratio < TARGET_PDF_RATIO:
            missed.append(f"VerifyPdf {pdf_ratio:.2f}x < {TARGET_PDF_RATIO:g}x plain pyHanko")
        print("VerifyOfd (one page, one GB/T 38540 SM2 seal with an SM2 time-stamp, streamed)")
        print(f"  govtrust gRPC          {ofd_rate:>10,.1f} calls/s   (non-VALID: {ofd_bad})")
        print(
            f"  beside VerifyPdf       {ofd_rate / pdf_rate if pdf_rate else 0.0:>10.2f}   "
            f"(target ≥ {TARGET_OFD:g}/s with --workers 2)"
        )
        if ofd_rate < TARGET_OFD:
            missed.append(f"VerifyOfd {ofd_rate:,.0f}/s < {TARGET_OFD:g}/s")
    if cert_bad or pdf_bad or ofd_bad:
        missed.append("some answers were not VALID")
    print("targets: " + ("met" if not missed else "MISSED — " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
