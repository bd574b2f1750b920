"""E-licence throughput beside its physical ceiling, measured in one run.

* offline QR verifications/s: ``license.qr.decode_payload`` (Base45 → zlib → CBOR → ECDSA P-256
  verify against a trust-list key), beside bare ``cryptography`` ECDSA P-256 verifies/s;
* licences issued/s without PDF: signed data (JWS through the soft key store) + offline QR
  payload (COSE through the key store): two signatures per licence, beside bare signs/s / 2;
* licences issued/s WITH the sealed PDF: the production path (``license.runtime``) on a
  scratch data directory (SQLite): registry check, JWS + QR, the PDF rendered and sealed with
  the department's official seal at PAdES B-T (in-process TSA), the licence row, the seal's
  use and the audit records — end to end per licence;
* licences issued/s WITH the sealed OFD: the same path with the type issued as OFD only (the
  page as OFD, sealed with a GB/T 38540 SM2 signature and an SM2 time-stamp); target ≥ 2× the
  PDF path's rate in the same run (issue 17). The two are measured in :data:`ROUNDS`
  interleaved rounds (the type switched between PDF only and OFD only) and the medians
  compared, so that a change of the machine's load does not favour one.

``--workers N`` runs N processes at once and sums them (each process is stateless, as the
server's workers). Exits 1 below the issue's targets: ≥ 5,000 verifications/s and ≥ 1,000
issued/s, with two workers by default (the issue's "--workers 2 where it applies").
Run: ``.venv/bin/python bench/license.py [--seconds 2] [--workers 2] [--no-pdf]``

``--bulk-only [--chunk 50]`` measures bulk issuance instead (issue 22 item 3: 存量证照电子化): on
a fresh PostgreSQL database (``GOVTRUST_TEST_PG_URL``'s server; durable commits), licences with
the sealed PDF (B-T) issued one IssueLicense at a time, then through
``LicenceService.issue_rows`` in chunks, by ``--workers`` processes at once, and in bulk with
the type issued as a sealed OFD instead; exits 1 below 300 licences/s in bulk (PDF).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from govtrust.db import Database
from govtrust.migrate import upgrade_to_head
from govtrust.principal import SYSTEM, Principal
from hsm import MasterKey, SoftKeyStore
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from idp.types import IdentityRef
from license import catalogue
from license.issuance import IssueRequest, LicenceService
from license.qr import TrustList, decode_payload, encode_payload
from license.signed_data import sign_licence
from tests.license.conftest import MiniCa, make_ca, make_signer, sample_metadata
from tests.license.test_catalogue import GOOD_BL

if TYPE_CHECKING:
    from govtrust.platform import Platform

TARGET_VERIFY = 5000.0
TARGET_ISSUE = 1000.0
TARGET_OFD_RATIO = 2.0
BATCH = 100
ROUNDS = 3
"""PDF and OFD issuance are measured in this many interleaved rounds each (the median)."""
REGISTRAR = Principal("user", "bench-registrar", frozenset({"identity-registrar"}))
ADMIN = Principal("user", "bench-admin", frozenset({"admin"}))
DEPT = Principal("service", "bench-dept", frozenset({f"licence-issuer:{catalogue.EXAMPLE_ISSUER}"}))


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per wall-clock second over ``seconds``."""
    for _ in range(3):
        fn()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def rates(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Calls per wall-clock second and per CPU second of this process over ``seconds`` (the
    CPU rate is the fairer one on a loaded machine: it does not count time spent waiting)."""
    for _ in range(3):
        fn()
    count = 0
    start, cpu = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn()
        count += 1
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return count / wall, count / used if used > 0 else 0.0


def run(seconds: float) -> dict[str, float]:
    """Measure every contender in this process."""
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'bench.db'}")
        upgrade_to_head(db.engine)
        store = SoftKeyStore(db, MasterKey.generate())
        ca = make_ca()
        signer = make_signer(store, ca)
        meta = sample_metadata()
        payload = encode_payload(signer, meta)
        trust = TrustList([ca.root])
        trust.add(signer.chain)

        key = ec.generate_private_key(ec.SECP256R1())
        message = b"x" * 300
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
        public = key.public_key()

        def issue() -> None:
            sign_licence(signer, meta)
            encode_payload(signer, meta)

        service, request = _service(db, store, ca)
        out = {
            "verify": rate(lambda: decode_payload(payload, trust), seconds),
            "verify_peer": rate(
                lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256())), seconds
            ),
            "issue": rate(issue, seconds),
            "issue_peer": rate(lambda: key.sign(message, ec.ECDSA(hashes.SHA256())), seconds) / 2,
            "issue_full": rate(lambda: service.issue(DEPT, request), seconds),
            "issue_batch": rate(lambda: service.issue_many(DEPT, [request] * BATCH), seconds)
            * BATCH,
            "qr_chars": float(len(payload)),
        }
        service.registry.reader.close()
        store.close()
        db.dispose()
        return out


def _department(platform: Platform) -> IssueRequest:
    """Seed the catalogue, register the department (with its active official seal) and the
    company; the request the benchmarks issue."""
    from license.runtime import runtime_for
    from tests.license.conftest import set_up_issuing_department

    runtime = runtime_for(platform)
    with platform.db.transaction() as session:
        catalogue.seed_catalogue(session, SYSTEM)
    set_up_issuing_department(runtime)
    return IssueRequest(
        type_code=catalogue.BUSINESS_LICENCE_CODE,
        issuer_code=catalogue.EXAMPLE_ISSUER,
        issuer_name="测试市市场监督管理局",
        holder_code_type="001",
        holder_code="91350100M000100Y43",
        fields=GOOD_BL,
        valid_from=date(2015, 6, 1),
    )


def run_pdf(seconds: float) -> dict[str, float]:
    """IssueLicense with the sealed PDF through the production runtime (scratch data dir)."""
    from govtrust.config import Settings
    from govtrust.server.wiring import open_wired
    from license.runtime import runtime_for

    with tempfile.TemporaryDirectory() as scratch:
        platform = open_wired(Settings(data_dir=Path(scratch)))
        try:
            request = _department(platform)
            runtime = runtime_for(platform)
            service = runtime.service
            with platform.db.read() as session:
                business = catalogue.get_type(session, catalogue.BUSINESS_LICENCE_CODE)

            def formats(*names: str) -> None:  # the same type, issued as PDF only / OFD only
                with platform.db.transaction() as session:
                    catalogue.define_type(
                        session, ADMIN, replace(business, document_formats=names), replace=True
                    )

            walls: dict[str, list[float]] = {"pdf": [], "ofd": []}
            cpus: dict[str, list[float]] = {"pdf": [], "ofd": []}
            for _ in range(ROUNDS):  # interleaved: a load change hits both paths alike
                for name in ("pdf", "ofd"):
                    formats(name)
                    wall, cpu = rates(lambda: service.issue(DEPT, request), seconds / ROUNDS)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            return {
                "issue_pdf": statistics.median(walls["pdf"]),
                "issue_ofd": statistics.median(walls["ofd"]),
                "issue_pdf_cpu": statistics.median(cpus["pdf"]),
                "issue_ofd_cpu": statistics.median(cpus["ofd"]),
            }
        finally:
            platform.close()


# --- bulk issuance on PostgreSQL (issue 22 item 3) ----------------------------------------------

PG_ADMIN = os.environ.get("GOVTRUST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_BULK = 300.0


def _pg_job(job: tuple[str, str, float, int, int, str]) -> tuple[float, float, float, int]:
    """One worker process of the PostgreSQL run: (licences/s per request or in bulk; in bulk,
    this process's CPU seconds, PostgreSQL's backends' CPU seconds over the same time — every
    backend of the database, the other workers' included, 0 where unreadable — and the
    licences issued)."""
    from govtrust.config import Settings
    from govtrust.server.wiring import open_wired
    from license.bulk_issuance import SourceRow
    from license.runtime import runtime_for

    data_dir, url, seconds, chunk, worker, mode = job
    platform = open_wired(Settings(data_dir=Path(data_dir), database_url=url))
    try:
        service = runtime_for(platform).service
        request = _bench_request()
        if mode == "request":
            return rate(lambda: service.issue(DEPT, request), seconds), 0.0, 0.0, 0
        counter = itertools.count()

        def one(size: int) -> int:
            rows = [SourceRow(f"{mode}-w{worker}-{next(counter)}", request) for _ in range(size)]
            outcomes = service.issue_rows(DEPT, rows)
            assert all(o.status == "issued" for o in outcomes), outcomes[0]
            return size

        one(4)  # warm up
        database = url.rsplit("/", 1)[1]
        done, start, cpu = 0, time.perf_counter(), time.process_time()
        backends = _backend_cpu(database)
        while time.perf_counter() - start < seconds:
            done += one(chunk)
        backends = _backend_cpu(database) - backends
        cpu = time.process_time() - cpu
        return done / (time.perf_counter() - start), cpu, max(backends, 0.0), done
    finally:
        platform.close()


def _backend_cpu(database: str) -> float:
    """CPU seconds of PostgreSQL's backends connected to ``database`` (from /proc: the server
    runs on this machine; 0 where a backend cannot be read)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
        pids = [
            row[0]
            for row in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            )
        ]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _documents_as(data_dir: str, url: str, formats: tuple[str, ...]) -> None:
    """Redefine the business licence to be issued as ``formats``."""
    from govtrust.config import Settings
    from govtrust.server.wiring import open_wired

    platform = open_wired(Settings(data_dir=Path(data_dir), database_url=url))
    try:
        with platform.db.transaction() as session:
            business = catalogue.get_type(session, catalogue.BUSINESS_LICENCE_CODE)
            catalogue.define_type(
                session, ADMIN, replace(business, document_formats=formats), replace=True
            )
    finally:
        platform.close()


def _bench_request() -> IssueRequest:
    return IssueRequest(
        type_code=catalogue.BUSINESS_LICENCE_CODE,
        issuer_code=catalogue.EXAMPLE_ISSUER,
        issuer_name="测试市市场监督管理局",
        holder_code_type="001",
        holder_code="91350100M000100Y43",
        fields=GOOD_BL,
        valid_from=date(2015, 6, 1),
    )


def _cli_import(data_dir: str, url: str, rows: int, workers: int) -> float:
    """``govtrust license import`` of ``rows`` CSV rows with ``--streams workers``: rows/s over
    the command's whole run (start-up of its worker processes included)."""
    import csv
    import subprocess

    root = Path(__file__).resolve().parent.parent
    source = Path(data_dir) / "register.csv"
    request = _bench_request()
    with source.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source_key", "type_code", "holder_code_type", "holder_code",
                         "valid_from", *request.fields])  # fmt: skip
        for i in range(rows):
            writer.writerow([f"cli-{i}", request.type_code, "001", request.holder_code,
                             "2015-06-01", *request.fields.values()])  # fmt: skip
    env = {**os.environ, "GOVTRUST_DATABASE_URL": url, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "govtrust", "license", "import", str(source), "--issuer",
         catalogue.EXAMPLE_ISSUER, "--streams", str(workers), "--data-dir", data_dir],
        cwd=root, env=env, capture_output=True, text=True, timeout=3600, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    summary = json.loads(done.stdout)
    assert summary["issued"] == rows, summary
    print(f"(govtrust license import: {seconds:.1f} s in all, {summary['seconds']} s reported)")
    return rows / seconds


def run_bulk(seconds: float, workers: int, chunk: int, cli_rows: int = 0) -> int:
    """Per-request and bulk issuance with the sealed PDF (B-T) on a fresh PostgreSQL database
    (durable: the server's default ``synchronous_commit``), ``workers`` processes at once."""
    import psycopg

    from govtrust.config import Settings
    from govtrust.server.wiring import open_wired

    name = f"gt_bench_bulk_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        with tempfile.TemporaryDirectory() as scratch:
            platform = open_wired(Settings(data_dir=Path(scratch), database_url=url))
            try:
                _department(platform)
            finally:
                platform.close()
            results: dict[str, float] = {}
            cpu: dict[str, tuple[float, float]] = {}
            if cli_rows:
                results["cli"] = _cli_import(scratch, url, cli_rows, workers)
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for mode in ("request", "bulk", "bulk_ofd"):
                    if mode == "bulk_ofd":  # the same type, issued as OFD only
                        _documents_as(scratch, url, ("ofd",))
                    jobs = [(scratch, url, seconds, chunk, w, mode) for w in range(workers)]
                    measured = pool.map(_pg_job, jobs)
                    results[mode] = sum(m[0] for m in measured)
                    issued = max(sum(m[3] for m in measured), 1)
                    cpu[mode] = (  # per licence: the workers', and the backends' (each saw all)
                        sum(m[1] for m in measured) / issued,
                        max(m[2] for m in measured) / issued,
                    )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"workers: {workers}; PostgreSQL (durable); sealed PDF at PAdES B-T; chunk {chunk}")
    print(f"licences issued/s, one IssueLicense per licence: {results['request']:8.1f}/s")
    print(
        f"licences issued/s, bulk (issue_rows, {chunk} rows a call): {results['bulk']:8.1f}/s   "
        f"×{results['bulk'] / results['request']:.2f} the per-request path   "
        f"target ≥ {TARGET_BULK:.0f}"
    )
    print(
        f"licences issued/s, bulk with the sealed OFD (GB/T 38540 SM2 + SM2 time-stamp) "
        f"instead: {results['bulk_ofd']:8.1f}/s   ×{results['bulk_ofd'] / results['bulk']:.2f} "
        "the bulk PDF path"
    )
    for mode, label in (("bulk", "bulk PDF"), ("bulk_ofd", "bulk OFD")):
        process, backends = cpu[mode]
        print(
            f"server CPU per licence, {label}: {process * 1000:.2f} ms in the issuing process + "
            f"{backends * 1000:.2f} ms in PostgreSQL's backends = "
            f"{(process + backends) * 1000:.2f} ms   (load average "
            f"{os.getloadavg()[0]:.1f})"
        )
    if "cli" in results:
        print(
            f"govtrust license import of {cli_rows} CSV rows, --streams {workers} (whole "
            f"command, start-up included): {results['cli']:8.1f} rows/s"
        )
    if results["bulk"] < TARGET_BULK:
        print("BELOW TARGET")
        return 1
    return 0


def _service(db: Database, store: SoftKeyStore, ca: MiniCa) -> tuple[LicenceService, IssueRequest]:
    """A licence service with a registered company and the seeded catalogue (SQLite)."""
    registry = IdentityRegistry(db, PiiCodec.from_master_key(MasterKey.generate()))
    person = registry.register_citizen(REGISTRAR, name="张三", id_number="11010519491231002X")
    registry.register_legal_person(
        REGISTRAR,
        uscc="91350100M000100Y43",
        name="福州示例科技有限公司",
        legal_representative=IdentityRef(id=person.id),
    )
    with db.transaction() as session:
        catalogue.seed_catalogue(session, SYSTEM)
    signer = make_signer(store, ca, uscc=catalogue.EXAMPLE_ISSUER)
    request = IssueRequest(
        type_code=catalogue.BUSINESS_LICENCE_CODE,
        issuer_code=catalogue.EXAMPLE_ISSUER,
        issuer_name="测试市市场监督管理局",
        holder_code_type="001",
        holder_code="91350100M000100Y43",
        fields=GOOD_BL,
        valid_from=date(2015, 6, 1),
    )
    service = LicenceService(db, registry, lambda _dept: signer, master_key=MasterKey.generate())
    return service, request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-pdf", action="store_true", help="skip the with-PDF measurement")
    parser.add_argument(
        "--bulk-only",
        action="store_true",
        help="only per-request vs bulk issuance with the sealed PDF, on PostgreSQL",
    )
    parser.add_argument("--chunk", type=int, default=50, help="rows per bulk call (--bulk-only)")
    parser.add_argument(
        "--cli-rows",
        type=int,
        default=0,
        help="with --bulk-only: also time `govtrust license import` of this many CSV rows",
    )
    args = parser.parse_args(argv)
    if args.bulk_only:
        return run_bulk(args.seconds, args.workers, args.chunk, args.cli_rows)
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(run, [args.seconds] * args.workers)
            if not args.no_pdf:
                pdf = pool.map(run_pdf, [args.seconds] * args.workers)
                results = [{**r, **p} for r, p in zip(results, pdf, strict=True)]
    else:
        results = [run(args.seconds)]
        if not args.no_pdf:
            results = [{**results[0], **run_pdf(args.seconds)}]
    total = {k: sum(r[k] for r in results) for k in results[0] if k != "qr_chars"}
    qr_chars = int(results[0]["qr_chars"])
    print(f"workers: {args.workers}; QR payload: {qr_chars} alphanumeric characters")
    print(
        f"offline QR verifications/s: {total['verify']:9.0f}   "
        f"bare ECDSA P-256 verify/s: {total['verify_peer']:9.0f}   "
        f"ratio {total['verify'] / total['verify_peer']:.2f}   target ≥ {TARGET_VERIFY:.0f}"
    )
    print(
        f"IssueLicense with DB, registry, audit (SQLite, no PDF): {total['issue_full']:7.0f}/s"
        " (informational; SQLite serialises writers)"
    )
    print(
        f"IssueLicense batches of {BATCH} per transaction (SQLite, no PDF): "
        f"{total['issue_batch']:7.0f}/s (informational)"
    )
    print(
        f"licences issued/s (no PDF): {total['issue']:9.0f}   "
        f"bare ECDSA sign/s ÷ 2:      {total['issue_peer']:9.0f}   "
        f"ratio {total['issue'] / total['issue_peer']:.2f}   target ≥ {TARGET_ISSUE:.0f}"
    )
    ok = total["verify"] >= TARGET_VERIFY and total["issue"] >= TARGET_ISSUE
    if "issue_pdf" in total:
        print(
            f"licences issued/s WITH the sealed PDF (PAdES B-T, production runtime, SQLite, "
            f"end to end): {total['issue_pdf']:7.1f}/s"
        )
        ofd_ratio = total["issue_ofd"] / total["issue_pdf"]
        print(
            f"licences issued/s WITH the sealed OFD (GB/T 38540 SM2 + SM2 time-stamp, same "
            f"path): {total['issue_ofd']:7.1f}/s   ratio to the PDF path {ofd_ratio:.2f}   "
            f"target ≥ {TARGET_OFD_RATIO:.0f}× the PDF path"
        )
        cpu_ratio = total["issue_ofd_cpu"] / total["issue_pdf_cpu"]
        print(
            f"  per CPU-second of the issuing processes: PDF {total['issue_pdf_cpu']:7.1f}/s, "
            f"OFD {total['issue_ofd_cpu']:7.1f}/s, ratio {cpu_ratio:.2f} (informational; "
            "the target is judged on wall time)"
        )
        ok = ok and ofd_ratio >= TARGET_OFD_RATIO
    if not ok:
        print("BELOW TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
