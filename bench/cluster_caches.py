"""What keeping replicas' caches true costs on the hot path, and what a lease tick costs, on
PostgreSQL (docs/scaling.md "Cluster jobs and caches").

In one process, on a scratch database (created and dropped on the PostgreSQL at
``GOVTRUST_TEST_PG_URL``, default ``postgres@127.0.0.1:5432``):

* a settled VerifyCertificate (the domain call, no transport) with our status store read on
  every call (``status_cache_seconds = 0``, the default: bound 0) and with the read cached
  (``status_cache_seconds = 1``): the difference is what the "read the row" design costs per
  call;
* one read of the CA's status epoch (the version row the OCSP cache polls every 0.25 s);
* one lease renewal (``govtrust.lease.acquire`` by the holder: what each replica pays per job
  per tick).

Run: ``.venv/bin/python -m bench.cluster_caches [--calls 2000]`` (as a module: ``bench/ca.py``
would shadow the ``ca`` package)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.authority import authority_for
from ca.context import STATUS_EPOCH, read_counter
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from govtrust.config import Settings
from govtrust.lease import acquire
from govtrust.principal import SYSTEM, Principal
from govtrust.server.wiring import open_wired
from verify.certificates import CertificateCheck, verify_certificate
from verify.service import VerifyConfig, VerifyContext

ADMIN = os.environ.get("GOVTRUST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
VERIFIER = Principal("service", "bench", frozenset({"verifier"}))


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    """Mean wall time of ``fn`` in microseconds over ``calls`` calls (after 50 warm-up)."""
    for _ in range(50):
        fn()
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    admin_url = ADMIN.replace("postgresql+psycopg://", "postgresql://")
    name = f"gt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as scratch:
            url = admin_url.rsplit("/", 1)[0] + f"/{name}"
            platform = open_wired(Settings(data_dir=Path(scratch), database_url=url))
            try:
                run(platform, args.calls)
            finally:
                platform.close()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(platform: object, calls: int) -> None:
    from govtrust.platform import Platform

    assert isinstance(platform, Platform)
    authority = authority_for(platform)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
    )
    row = authority.issue(
        SYSTEM,
        IssueRequest(
            profile="service",
            subject=SubjectSpec(service=ServiceSubject("bench")),
            csr=csr.public_bytes(serialization.Encoding.PEM),
        ),
    ).certificate
    results: dict[str, float] = {}
    for label, seconds in (("read every call (bound 0)", 0.0), ("cached 1 s (bound 1 s)", 1.0)):
        ctx = VerifyContext(
            platform.db,
            platform.keystore,
            authority,
            config=VerifyConfig(status_cache_seconds=seconds, audit_interval_ms=20.0),
        )
        try:

            def check(ctx: VerifyContext = ctx) -> None:
                verify_certificate(ctx, VERIFIER, CertificateCheck(row.der))

            results[label] = per_call_us(check, calls)
            verify_certificate(ctx, VERIFIER, CertificateCheck(row.der)).audited.result(30)
        finally:
            ctx.close()

    def epoch() -> int:
        with platform.db.read() as session:
            return read_counter(session, STATUS_EPOCH)

    results["status epoch read (OCSP cache, every 0.25 s)"] = per_call_us(epoch, calls)
    acquire(platform.db, "bench", "me", 30)
    results["lease renewal (per job per tick)"] = per_call_us(
        lambda: acquire(platform.db, "bench", "me", 30), calls // 4
    )
    for label, value in results.items():
        print(f"{label:48s} {value:8.0f} µs/call")
    cost = results["read every call (bound 0)"] - results["cached 1 s (bound 1 s)"]
    print(f"{'status row read on the hot path':48s} {cost:8.0f} µs/call")


if __name__ == "__main__":
    main()
