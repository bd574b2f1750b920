"""Certificate-authority benchmarks, side by side in one run.

1. **CRL**: a CRL with ``--crl-entries`` (default 1,000,000) revoked entries built in one pass
   and signed through the key store, timed; openssl then parses and verifies it. Target < 15 s.
2. **Issuance over gRPC**: ``govtrust serve --workers N`` (default 2) on a fresh data directory
   (PostgreSQL when reachable — durable commits with ``synchronous_commit=on`` — else SQLite);
   a grpc.aio client issues service certificates from pre-generated P-256 CSRs with
   ``--concurrency`` calls in flight. Target ≥ 500 certificates/s. (EJBCA documents ~100/s.)
   Then the same count from SM2 CSRs (SM3-with-SM2, issued by the SM2 hierarchy's service CA)
   on the same server, beside ``openssl speed sm2``: target ≥ 50 % of the ECDSA rate.
3. **Cached OCSP over HTTP**: the same server answers POST /ocsp for ``--ocsp-certs`` of those
   certificates (nonce-less SHA-1 CertIDs, pre-produced and cached), driven by a keep-alive
   HTTP/1.1 load client in ``--clients`` processes; then ``openssl ocsp -index index.txt -port``
   (``-multi N``) serves the same certificates (an index.txt written here, a delegated responder
   certificate issued by our CA for a key openssl holds) under the same client. Targets:
   ≥ 5,000 responses/s and ≥ openssl's rate.
4. **Time-stamping over HTTP**: a fresh server answers ``POST /tsa`` (and ``/tsa/sm2``) for one
   ``openssl ts -query`` request under ``wrk`` (a token checked with ``openssl ts -verify``
   first; the ledger must hold a row for every token answered); beside it ``openssl ts -reply``
   (one process per reply, ``--workers`` at a time) with a P-256 key. Target ≥ 2,000 tokens/s.

Run: ``.venv/bin/python bench/ca.py [--workers 2] [--issue 3000] [--crl-entries 1000000]``;
``--only crl|issue|ocsp|tsa`` runs one part, ``--server-tree DIR`` runs the server from another
checkout (A/B in one sitting), ``--py-spy DIR`` profiles the workers during issuance. Issuance
reports CPU per certificate for the server, PostgreSQL (the bench database's backends and the
WAL writer) and the bench client separately: on two cores they all compete.
Exit status 1 when a target is missed (the figures are printed either way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asn1crypto import keys, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("GOVTRUST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_ISSUE = 500.0
TARGET_OCSP = 5000.0
TARGET_SM2_SHARE = 0.5  # SM2 issuance rate as a share of the ECDSA rate in the same run
TARGET_CRL_SECONDS = 15.0
TARGET_TSA = 2000.0  # time-stamp tokens/s over HTTP (issue 22)

CHANNELS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pem(der: bytes, kind: str = "CERTIFICATE") -> str:
    import base64

    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {kind}-----\n{body}-----END {kind}-----\n"


# --- database -------------------------------------------------------------------------------------


def make_database(kind: str) -> tuple[str | None, str]:
    """(database URL or None for SQLite, description)."""
    if kind in ("auto", "postgresql"):
        try:
            import psycopg

            name = f"gt_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
                sync = admin.execute("SHOW synchronous_commit").fetchone()
            base = PG_ADMIN.rsplit("/", 1)[0]
            return f"{base}/{name}", f"PostgreSQL (synchronous_commit={sync[0] if sync else '?'})"
        except Exception as exc:  # noqa: BLE001
            if kind == "postgresql":
                raise SystemExit(f"PostgreSQL not reachable: {exc}") from None
    return None, "SQLite (WAL)"


def drop_database(url: str | None) -> None:
    if url is None:
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- 1. CRL ---------------------------------------------------------------------------------------


def bench_crl(platform: Any, entries: int, tmp: Path) -> float:
    """Build and sign a CRL with ``entries`` entries; returns seconds."""
    from ca.authority import authority_for
    from ca.crl import build_crl

    authority = authority_for(platform)
    ca = authority.hierarchy.ca("citizen")
    moment = datetime.now(UTC).replace(microsecond=0)
    base = 1 << 127
    revoked = [
        (
            base + (i * 0x9E3779B97F4A7C15),
            moment - timedelta(seconds=i % 86400),
            (i % 5) or None,
            None,
        )
        for i in range(entries)
    ]
    started = time.perf_counter()
    der, count = build_crl(
        signer=ca.key,
        issuer_name=ca.subject,
        issuer_key_id=ca.key_id,
        entries=revoked,
        crl_number=1,
        this_update=moment,
        next_update=moment + timedelta(days=1),
    )
    seconds = time.perf_counter() - started
    assert count == entries
    path = tmp / "big.crl"
    path.write_bytes(der)
    chain = tmp / "crl-chain.pem"
    chain.write_text(pem(authority.hierarchy.get("root").der) + pem(ca.der))
    check = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(path), "-CAfile", str(chain), "-noout"],
        capture_output=True,
        text=True,
        check=False,
    )
    ok = "verify OK" in check.stdout + check.stderr
    print(
        f"  CRL: {entries:,} entries, {len(der) / 1e6:.1f} MB, built and signed in "
        f"{seconds:.2f} s; openssl crl -verify: {'OK' if ok else 'FAILED'}"
    )
    return seconds if ok else float("inf")


# --- the server -----------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[str]
    grpc: str
    http: str


def start_server(data_dir: Path, db_url: str | None, workers: int, tree: Path = REPO) -> Server:
    """``govtrust serve`` from ``tree`` (this checkout by default; ``--server-tree`` runs
    another one, e.g. the previous commit, for an A/B comparison in one sitting)."""
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if db_url:
        env["GOVTRUST_DATABASE_URL"] = db_url
    env.pop("GOVTRUST_CONFIG", None)
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
        cwd=str(tree),
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
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
            return Server(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}")
    process.kill()
    raise SystemExit("govtrust serve did not start:\n" + "".join(lines))


def tree_cpu_seconds(root: int) -> float:
    """User+system CPU seconds of a process and its live children (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def postgres_cpu_seconds(db_url: str | None) -> float:
    """User+system CPU seconds of the PostgreSQL processes that serve the bench database (the
    backends, whose process title names the database) plus the shared WAL writer (it flushes
    commits too); 0 on SQLite. Backends that exited are not counted, so read it while the
    server's pool is connected."""
    if db_url is None:
        return 0.0
    name = db_url.rsplit("/", 1)[1]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not title.startswith("postgres:"):
                continue
            if f" {name} " not in title and "walwriter" not in title:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()


# --- 2. issuance over gRPC ------------------------------------------------------------------------


def make_csrs(count: int) -> list[bytes]:
    from cryptography import x509 as cx
    from cryptography.x509.oid import NameOID

    result = []
    name = cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, "bench")])
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = cx.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        result.append(csr.public_bytes(serialization.Encoding.DER))
    return result


def make_sm2_csrs(count: int) -> list[bytes]:
    """SM2 CSRs signed SM3-with-SM2 with the default signer ID (as ``openssl req`` makes them)."""
    from asn1crypto import core
    from asn1crypto import csr as asn1_csr

    from hsm.sm2 import SM3_WITH_SM2_OID, Sm2PrivateKey

    name = x509.Name.build({"common_name": "bench"})
    result = []
    for _ in range(count):
        key = Sm2PrivateKey.generate()
        info = asn1_csr.CertificationRequestInfo(
            {
                "version": "v1",
                "subject": name,
                "subject_pk_info": keys.PublicKeyInfo.load(key.public_key_der),
                "attributes": [],
            }
        )
        request = asn1_csr.CertificationRequest(
            {
                "certification_request_info": info,
                "signature_algorithm": {"algorithm": SM3_WITH_SM2_OID},
                "signature": core.OctetBitString(key.sign(info.dump())),
            }
        )
        result.append(request.dump())
    return result


def openssl_speed_sm2() -> float:
    """``openssl speed sm2`` signatures per second (one core, 1 s)."""
    result = subprocess.run(
        ["openssl", "speed", "-seconds", "1", "sm2"], capture_output=True, text=True, check=False
    )
    for line in result.stdout.splitlines():
        if "SM2" in line and "bits" in line:
            return float(line.split()[-2])
    return 0.0


async def _issue_all(
    address: str, csrs: list[bytes], concurrency: int
) -> tuple[float, list[bytes]]:
    import grpc

    from govtrust.v1 import certificate_pb2 as pb
    from govtrust.v1 import common_pb2

    # Several channels, each with its own connection (no global subchannel sharing), so that
    # SO_REUSEPORT spreads the calls over the server's workers.
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CHANNELS)
    ]
    try:
        # Requests are serialised before the clock starts and sent as bytes through a generic
        # callable (the client's CPU competes with the server's on two cores); every response
        # is still parsed and its certificate kept for the OCSP part.
        method = "/govtrust.v1.CertificateService/IssueCertificate"
        calls = [
            c.unary_unary(method, request_serializer=None, response_deserializer=None)
            for c in channels
        ]
        subject = pb.CertificateSubject(
            service=pb.ServiceSubject(system_id="bench-system", dns_names=["bench.example.gov.cn"])
        )
        queue = [
            pb.IssueCertificateRequest(
                csr=csr, profile=common_pb2.CERTIFICATE_PROFILE_SERVICE, subject=subject
            ).SerializeToString()
            for csr in reversed(csrs)
        ]
        issued: list[bytes] = []

        async def worker(index: int) -> None:
            call = calls[index % len(calls)]
            while queue:
                raw = await call(queue.pop(), timeout=60)
                response = pb.IssueCertificateResponse.FromString(raw)
                issued.append(response.certificate.summary.der)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return time.perf_counter() - started, issued
    finally:
        for channel in channels:
            await channel.close(None)


def bench_issue(
    server: Server, count: int, concurrency: int, db_url: str | None, *, sm2: bool = False
) -> tuple[float, list[bytes]]:
    csrs = make_sm2_csrs(count + 200) if sm2 else make_csrs(count + 200)
    asyncio.run(_issue_all(server.grpc, csrs[:200], concurrency))  # warm-up (bootstrap, pools)
    cpu = tree_cpu_seconds(server.process.pid)
    pg = postgres_cpu_seconds(db_url)
    client = time.process_time()
    seconds, issued = asyncio.run(_issue_all(server.grpc, csrs[200:], concurrency))
    client = time.process_time() - client
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    pg = postgres_cpu_seconds(db_url) - pg
    rate = count / seconds
    assert len(issued) == count
    print(
        f"  {'SM2' if sm2 else 'ECDSA'} issuance over gRPC: {count:,} certificates in "
        f"{seconds:.2f} s = {rate:,.0f}/s "
        f"(concurrency {concurrency}); CPU per certificate: server {cpu / count * 1e6:,.0f} us"
        f" + PostgreSQL {pg / count * 1e6:,.0f} us = {(cpu + pg) / count * 1e6:,.0f} us"
        f" (= {count / max(cpu + pg, 1e-9):,.0f}/s per busy core); "
        f"bench client {client / count * 1e6:,.0f} us"
    )
    return rate, issued


# --- 3. OCSP --------------------------------------------------------------------------------------


def ocsp_request(cert_der: bytes, issuer_der: bytes) -> bytes:
    from asn1crypto import ocsp

    cert = x509.Certificate.load(cert_der)
    issuer = x509.Certificate.load(issuer_der)
    request: bytes = ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    {
                        "req_cert": {
                            "hash_algorithm": {"algorithm": "sha1"},
                            "issuer_name_hash": hashlib.sha1(issuer.subject.dump()).digest(),  # noqa: S324
                            "issuer_key_hash": issuer.public_key.sha1,
                            "serial_number": cert.serial_number,
                        }
                    }
                ]
            }
        }
    ).dump()
    return request


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending POST /ocsp requests back to back."""

    def __init__(
        self,
        host: str,
        requests: list[bytes],
        counter: list[int],
        stop: float,
        done: asyncio.Future[None],
        offset: int,
    ) -> None:
        self.host = host
        self.requests = requests
        self.counter = counter
        self.stop = stop
        self.done = done
        self.index = offset
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.closed_by_server = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        body = self.requests[self.index % len(self.requests)]
        self.index += 1
        self.transport.write(
            b"POST /ocsp HTTP/1.1\r\nHost: " + self.host.encode() + b"\r\n"
            b"Content-Type: application/ocsp-request\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                if line.startswith(b"connection:") and b"close" in line:
                    self.closed_by_server = True
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4 : head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length :]
            if head.startswith((b"http/1.1 200", b"http/1.0 200")) and body[:1] == b"\x30":
                self.counter[0] += 1
            if time.perf_counter() >= self.stop:
                assert self.transport is not None
                self.transport.close()
                return
            if self.closed_by_server:
                return  # connection_lost reconnects
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _load(
    host: str, port: int, requests: list[bytes], seconds: float, connections: int, seed: int
) -> int:
    loop = asyncio.get_running_loop()
    counter = [0]
    stop = time.perf_counter() + seconds

    async def connection(offset: int) -> None:
        while time.perf_counter() < stop:
            done: asyncio.Future[None] = loop.create_future()

            def factory(done: asyncio.Future[None] = done, offset: int = offset) -> _Client:
                return _Client(host, requests, counter, stop, done, offset)

            try:
                await loop.create_connection(factory, host, port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            await done
            offset += 1

    await asyncio.gather(*(connection(seed * 1000 + i * 37) for i in range(connections)))
    return counter[0]


def _load_process(args: tuple[str, int, list[bytes], float, int, int], results: Any) -> None:
    host, port, requests, seconds, connections, seed = args
    results.put(asyncio.run(_load(host, port, requests, seconds, connections, seed)))


def load(url: str, requests: list[bytes], seconds: float, clients: int, connections: int) -> float:
    """Responses per second from ``clients`` processes with ``connections`` each."""
    host, port = url.removeprefix("http://").split(":")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [
        context.Process(
            target=_load_process,
            args=((host, int(port), requests, seconds, connections, i), results),
        )
        for i in range(clients)
    ]
    for p in processes:
        p.start()
    total: int = sum(int(results.get(timeout=seconds + 60)) for _ in processes)
    for p in processes:
        p.join(10)
    return total / seconds


def load_wrk(
    url: str,
    request: bytes,
    seconds: float,
    connections: int,
    path: str = "/ocsp",
    content_type: str = "application/ocsp-request",
) -> float:
    """2xx responses per second from ``wrk`` (a C client, so the two cores go to the servers;
    it reconnects when a server closes, as ``openssl ocsp`` does): one request (OCSP unless
    ``path`` and ``content_type`` say otherwise), POSTed."""
    import re

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "request.der").write_bytes(request)
        script = Path(tmp) / "post.lua"
        script.write_text(
            f'local f = io.open("{tmp}/request.der", "rb")\n'
            'wrk.method = "POST"\n'
            'wrk.body = f:read("*a")\n'
            f'wrk.headers["Content-Type"] = "{content_type}"\n'
        )
        command = [
            "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s",
            "-s", str(script), f"{url}{path}",
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
    total = re.search(r"(\d+) requests in", result.stdout)
    if total is None:
        raise SystemExit(f"wrk failed: {result.stdout}{result.stderr}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    errors = re.search(r"Socket errors: (.*)", result.stdout)
    good = int(total.group(1)) - (int(bad.group(1)) if bad else 0)
    if bad or errors or good == 0:
        print(f"  (wrk against {url}: {result.stdout.strip()} {result.stderr.strip()})")
    return good / seconds


def openssl_responder(
    platform: Any, certs: list[bytes], tmp: Path, workers: int, probe: bytes
) -> tuple[subprocess.Popen[bytes], int]:
    """``openssl ocsp -index`` for the same certificates, signing with a delegated responder
    certificate our service CA issues for a key openssl holds."""
    from ca.authority import authority_for
    from ca.builder import build_certificate, ordered_name, profile_extensions, random_serial
    from ca.profiles import RESPONDER_PROFILE
    from ca.signing import now

    authority = authority_for(platform)
    ca = authority.hierarchy.ca("service")
    key = ec.generate_private_key(ec.SECP256R1())
    spki = keys.PublicKeyInfo.load(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    start = now() - timedelta(minutes=5)
    responder = build_certificate(
        signer=ca.key,
        issuer_name=ca.subject,
        issuer_key_id=ca.key_id,
        subject=ordered_name([("country_name", "CN"), ("common_name", "openssl OCSP bench")]),
        spki=spki,
        serial=random_serial(),
        not_before=start,
        not_after=start + timedelta(days=2),
        extensions=profile_extensions(RESPONDER_PROFILE, authority.ctx.config, "ec"),
    )
    (tmp / "rsigner.pem").write_text(pem(responder))
    (tmp / "rkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp / "ca.pem").write_text(pem(ca.der))
    lines = []
    for der in certs:
        cert = x509.Certificate.load(der)
        expiry = cert.not_valid_after.strftime("%y%m%d%H%M%SZ")
        subject = "/" + "/".join(
            f"{k}={v}" for k, v in (("C", "CN"), ("CN", cert.subject.native.get("common_name")))
        )
        lines.append(f"V\t{expiry}\t\t{cert.serial_number:X}\tunknown\t{subject}\n")
    (tmp / "index.txt").write_text("".join(lines))
    (tmp / "index.txt.attr").write_text("unique_subject = no\n")  # all share one subject
    port = free_port()
    process = subprocess.Popen(
        [
            "openssl",
            "ocsp",
            "-index",
            str(tmp / "index.txt"),
            "-CA",
            str(tmp / "ca.pem"),
            "-rsigner",
            str(tmp / "rsigner.pem"),
            "-rkey",
            str(tmp / "rkey.pem"),
            "-port",
            str(port),
            "-multi",
            str(workers),
            "-ignore_err",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "openssl-ocsp.log").open("wb"),
    )
    # Wait with a real request: a bare connect-and-close leaves an `openssl ocsp` child
    # spinning on the empty connection (seen with OpenSSL 3.0), and the responder then
    # answers nothing more.
    import httpx

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.post(
                f"http://127.0.0.1:{port}/ocsp",
                content=probe,
                headers={"content-type": "application/ocsp-request"},
                timeout=5,
            )
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return process, port


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``openssl ocsp -multi`` and its worker children (found by parent pid)."""
    import signal

    children = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent_of(entry) == process.pid
    ]
    for pid in [process.pid, *children]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    process.wait(10)


def _parent_of(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def check_response(url: str, request: bytes, expected_status: str) -> bool:
    """One request through httpx: the answer is a successful response with this status."""
    import httpx
    from asn1crypto import ocsp

    response = httpx.post(
        f"{url}/ocsp",
        content=request,
        headers={"content-type": "application/ocsp-request"},
        timeout=10,
    )
    parsed = ocsp.OCSPResponse.load(response.content)
    if parsed["response_status"].native != "successful":
        return False
    single = parsed.basic_ocsp_response["tbs_response_data"]["responses"][0]
    return bool(single["cert_status"].name == expected_status)


def bench_ocsp(
    platform: Any, server: Server, issued: list[bytes], args: argparse.Namespace, tmp: Path
) -> tuple[float, float]:
    """Cached OCSP: (govtrust responses/s, openssl ocsp responses/s). Stops ``server``."""
    from ca.authority import authority_for

    authority = authority_for(platform)
    service_ca = authority.hierarchy.ca("service").der
    certs = issued[: args.ocsp_certs]
    requests = [ocsp_request(c, service_ca) for c in certs]
    if not check_response(server.http, requests[0], "good"):
        print("  (govtrust did not answer 'good' for a freshly issued certificate)")
        return 0.0, float("inf")
    use_wrk = args.load == "wrk"
    if not use_wrk:
        load(server.http, requests, 1.0, args.clients, args.connections)  # warm both workers
    cpu = tree_cpu_seconds(server.process.pid)
    if use_wrk:
        ours = load_wrk(server.http, requests[0], args.ocsp_seconds, args.connections)
    else:
        ours = load(server.http, requests, args.ocsp_seconds, args.clients, args.connections)
    cpu = tree_cpu_seconds(server.process.pid) - cpu
    per = cpu / max(ours * args.ocsp_seconds, 1)
    print(
        f"  govtrust OCSP server CPU {per * 1e6:.0f} us per response "
        f"(= {1 / max(per, 1e-9):,.0f}/s per busy core)"
    )
    stop_server(server)

    process, port = openssl_responder(platform, certs, tmp, args.workers, requests[0])
    try:
        openssl_url = f"http://127.0.0.1:{port}"
        if process.poll() is not None:
            log = (tmp / "openssl-ocsp.log").read_text(errors="replace")
            raise SystemExit(f"openssl ocsp exited: {log}")
        if not check_response(openssl_url, requests[0], "good"):
            print("  (openssl responder did not answer 'good'; its rate is still measured)")
        if use_wrk:
            theirs = load_wrk(openssl_url, requests[0], args.ocsp_seconds, args.connections)
        else:
            theirs = load(openssl_url, requests, args.ocsp_seconds, args.clients, args.connections)
    finally:
        stop_group(process)
    print(
        f"  cached OCSP over HTTP: govtrust {ours:,.0f}/s; openssl ocsp -index -multi "
        f"{args.workers}: {theirs:,.0f}/s; ratio {ours / max(theirs, 1):.2f}"
    )
    return ours, theirs


# --- time-stamping -------------------------------------------------------------------------------

_OPENSSL_TSA_CONFIG = """\
[tsa]
default_tsa = tsa_config
[tsa_config]
dir = {dir}
serial = {dir}/tsaserial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
certs = {dir}/tsa.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl_tsa(tmp: Path) -> Path:
    """A directory holding an ``openssl ts -reply`` configuration with a P-256 TSA key and a
    self-signed certificate (critical EKU timeStamping), the peer of our TSA."""
    directory = tmp / "openssl-tsa"
    directory.mkdir(exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(directory / "tsa.key"), "-out", str(directory / "tsa.pem"),
         "-days", "30", "-subj", "/CN=openssl bench TSA",
         "-addext", "extendedKeyUsage=critical,timeStamping",
         "-addext", "keyUsage=critical,digitalSignature"],
        check=True, capture_output=True,
    )  # fmt: skip
    (directory / "tsaserial").write_text("01\n")
    (directory / "tsa.cnf").write_text(_OPENSSL_TSA_CONFIG.format(dir=directory))
    return directory


def openssl_ts_reply_rate(tmp: Path, query: Path, seconds: float, parallel: int) -> float:
    """Replies per second of ``openssl ts -reply`` (one process per reply, as the command is
    used), ``parallel`` at a time for ``seconds``."""
    directory = _openssl_tsa(tmp)
    command = [
        "openssl", "ts", "-reply", "-config", str(directory / "tsa.cnf"),
        "-queryfile", str(query), "-out", os.devnull,
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)  # it works (and is warm)
    counts = [0] * parallel
    deadline = time.monotonic() + seconds

    def loop(index: int) -> None:
        while time.monotonic() < deadline:
            subprocess.run(command, check=True, capture_output=True)
            counts[index] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - start)


def _token_rows(platform: Any) -> int:
    from sqlalchemy import func, select

    from ca.models import CaTsaToken

    with platform.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(CaTsaToken)) or 0)


def bench_tsa(
    platform: Any, server: Server, args: argparse.Namespace, tmp: Path
) -> tuple[float, float, float]:
    """Time-stamp tokens over HTTP: (``POST /tsa`` tokens/s, ``POST /tsa/sm2`` tokens/s,
    ``openssl ts -reply`` replies/s), every granted token checked against the ledger."""
    import httpx

    from ca.authority import authority_for

    authority = authority_for(platform)
    data = tmp / "document.txt"
    data.write_bytes(b"a document to time-stamp")
    query = tmp / "request.tsq"
    subprocess.run(
        ["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(query)],
        check=True,
        capture_output=True,
    )
    request = query.read_bytes()
    tsa = authority.hierarchy.tsa()
    chain = authority.hierarchy.chain(tsa.name)
    (tmp / "root.pem").write_text(pem(chain[-1].der))
    (tmp / "untrusted.pem").write_text("".join(pem(i.der) for i in chain[:-1]))
    reply = httpx.post(
        f"{server.http}/tsa",
        content=request,
        headers={"content-type": "application/timestamp-query"},
        timeout=30,
    )
    (tmp / "reply.tsr").write_bytes(reply.content)
    verified = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(data), "-in", str(tmp / "reply.tsr"),
         "-CAfile", str(tmp / "root.pem"), "-untrusted", str(tmp / "untrusted.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if "Verification: OK" not in verified.stdout:
        raise SystemExit(f"openssl ts -verify refused it: {verified.stdout}{verified.stderr}")
    rates = []
    for path in ("/tsa", "/tsa/sm2"):
        connections = args.tsa_connections
        load_wrk(server.http, request, 1.0, connections, path, "application/timestamp-query")
        before = _token_rows(platform)
        cpu = tree_cpu_seconds(server.process.pid)
        rate = load_wrk(
            server.http, request, args.tsa_seconds, connections, path,
            "application/timestamp-query",
        )  # fmt: skip
        cpu = tree_cpu_seconds(server.process.pid) - cpu
        recorded = _token_rows(platform) - before
        answered = round(rate * args.tsa_seconds)
        print(
            f"  POST {path}: {rate:,.0f} tokens/s under wrk -c {connections}; "
            f"{recorded:,} ledger rows for {answered:,} answers; server CPU "
            f"{cpu / max(answered, 1) * 1e6:.0f} us per token"
        )
        if recorded < answered:
            raise SystemExit(f"{path}: fewer ledger rows than tokens answered")
        rates.append(rate)
    stop_server(server)
    theirs = openssl_ts_reply_rate(tmp, query, args.tsa_seconds, args.workers)
    print(
        f"  openssl ts -reply (a process per reply, {args.workers} at a time): {theirs:,.1f}/s;"
        f" /tsa is x{rates[0] / max(theirs, 1e-9):.1f}"
    )
    return rates[0], rates[1], theirs


@contextlib.contextmanager
def maybe_profile(server: Server, directory: str | None) -> Iterator[None]:
    """With ``--py-spy DIR``: record every worker of ``server`` with py-spy (raw, collapsed
    stacks, native frames off) for the duration of the block, one file per worker."""
    if not directory:
        yield
        return
    import signal

    spy = REPO / ".venv" / "bin" / "py-spy"
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    workers = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent_of(entry) == server.process.pid
    ] or [server.process.pid]
    recorders = [
        subprocess.Popen(
            [str(spy), "record", "--format", "raw", "--rate", "100", "--nonblocking",
             "--pid", str(pid), "--output", str(out / f"worker-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in workers
    ]  # fmt: skip
    time.sleep(1.0)  # let py-spy attach
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(60)
        print(f"  py-spy profiles of {len(workers)} worker(s) in {out}")


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--issue", type=int, default=3000, help="certificates to issue")
    parser.add_argument("--concurrency", type=int, default=48, help="gRPC calls in flight")
    parser.add_argument("--ocsp-certs", type=int, default=1000)
    parser.add_argument("--ocsp-seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2, help="load-client processes")
    parser.add_argument("--connections", type=int, default=16, help="connections per client")
    parser.add_argument("--crl-entries", type=int, default=1_000_000)
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="OCSP load generator: wrk (C) or the asyncio client processes",
    )
    parser.add_argument("--database", choices=("auto", "sqlite", "postgresql"), default="auto")
    parser.add_argument(
        "--only",
        choices=("all", "crl", "issue", "ocsp", "tsa"),
        default="all",
        help="run one part (ocsp also issues the certificates it serves)",
    )
    parser.add_argument("--tsa-seconds", type=float, default=5.0)
    parser.add_argument(
        "--tsa-connections",
        type=int,
        default=64,
        help="wrk connections for /tsa (tokens in flight share the ledger's commits)",
    )
    parser.add_argument(
        "--server-tree",
        type=Path,
        default=REPO,
        help="source tree to run the server from (A/B against another checkout)",
    )
    parser.add_argument(
        "--py-spy", metavar="DIR", help="profile the server's workers during issuance into DIR"
    )
    args = parser.parse_args(argv)
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is needed for the side-by-side figures")

    tmp = Path(tempfile.mkdtemp(prefix="govtrust-bench-ca-"))
    db_url, db_text = make_database(args.database)
    print(
        f"govtrust CA bench: {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, {db_text}, workers={args.workers}"
    )
    failures: list[str] = []
    server: Server | None = None
    try:
        from govtrust.config import load_settings
        from govtrust.server.wiring import open_wired

        flags: dict[str, Any] = {"data_dir": tmp / "data"}
        if db_url:
            flags["database_url"] = db_url
        settings = load_settings(flags, env={})
        platform = open_wired(settings, migrate=True)

        crl_seconds: float | None = None
        issue_rate: float | None = None
        sm2_rate: float | None = None
        openssl_sm2 = 0.0
        ours = theirs = None
        if args.only in ("all", "crl"):
            crl_seconds = bench_crl(platform, args.crl_entries, tmp)
            if crl_seconds >= TARGET_CRL_SECONDS:
                failures.append("CRL")

        if args.only in ("all", "issue", "ocsp"):
            server = start_server(tmp / "data", db_url, args.workers, args.server_tree)
            count = args.issue if args.only != "ocsp" else max(args.ocsp_certs, 1)
            with maybe_profile(server, args.py_spy):
                issue_rate, issued = bench_issue(server, count, args.concurrency, db_url)
            if args.only != "ocsp" and issue_rate < TARGET_ISSUE:
                failures.append("issuance")
            if args.only != "ocsp":
                sm2_rate, _ = bench_issue(server, count, args.concurrency, db_url, sm2=True)
                openssl_sm2 = openssl_speed_sm2()
                print(f"  openssl speed sm2: {openssl_sm2:,.0f} signatures/s (one core)")
                if sm2_rate < TARGET_SM2_SHARE * issue_rate:
                    failures.append("SM2 issuance")

        if args.only in ("all", "ocsp"):
            assert server is not None
            ours, theirs = bench_ocsp(platform, server, issued, args, tmp)
            server = None  # stopped by bench_ocsp
            if ours < TARGET_OCSP or ours < theirs:
                failures.append("OCSP")

        tsa_rates: tuple[float, float, float] | None = None
        if args.only in ("all", "tsa"):
            server = start_server(tmp / "data", db_url, args.workers, args.server_tree)
            tsa_rates = bench_tsa(platform, server, args, tmp)
            server = None  # stopped by bench_tsa
            if tsa_rates[0] < TARGET_TSA:
                failures.append("TSA")
        platform.close()

        print()
        print(f"  {'measure':34s} {'govtrust':>12s} {'target/peer':>14s}")
        if crl_seconds is not None:
            print(f"  {'CRL 1M entries build+sign (s)':34s} {crl_seconds:12.2f} {'< 15':>14s}")
        if issue_rate is not None and args.only != "ocsp":
            print(
                f"  {'issuance over gRPC (certs/s)':34s} {issue_rate:12,.0f} "
                f"{'>= 500':>14s}   (EJBCA ~100/s: x{issue_rate / 100:.1f})"
            )
        if sm2_rate is not None and issue_rate:
            print(
                f"  {'SM2 issuance over gRPC (certs/s)':34s} {sm2_rate:12,.0f} "
                f"{issue_rate * TARGET_SM2_SHARE:>14,.0f}   "
                f"({sm2_rate / issue_rate:.0%} of ECDSA, target >= 50%; "
                f"openssl speed sm2 {openssl_sm2:,.0f} sign/s)"
            )
        if ours is not None and theirs is not None:
            print(
                f"  {'cached OCSP (responses/s)':34s} {ours:12,.0f} {theirs:14,.0f}   "
                f"(ratio x{ours / max(theirs, 1):.2f}, target >= 5,000)"
            )
        if tsa_rates is not None:
            tokens, sm2_tokens, openssl_tokens = tsa_rates
            print(
                f"  {'time-stamp tokens /tsa (tokens/s)':34s} {tokens:12,.0f} "
                f"{openssl_tokens:14,.1f}   (x{tokens / max(openssl_tokens, 1e-9):.1f} "
                f"openssl ts -reply, target >= {TARGET_TSA:,.0f})"
            )
            print(f"  {'time-stamp tokens /tsa/sm2':34s} {sm2_tokens:12,.0f}")
    finally:
        if server is not None:
            stop_server(server)
        drop_database(db_url)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"targets missed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
