"""Seals per second for a one-page PDF, beside plain pyHanko, measured in one run.

Contenders (same one-page PDF, same P-256 seal key and certificate chain):

* ``pyhanko``    — plain pyHanko: ``SimpleSigner`` (key in memory) + ``signers.sign_pdf`` with
  its defaults (invisible signature), the peer the issue names;
* ``govtrust B-B`` / ``govtrust B-T`` — :meth:`seal.pdf.SealPdf.seal`, the whole product path:
  authorisation (active seal, grant / representative), visible seal picture, signature through
  the key store, RFC 3161 time-stamp from our TSA (B-T), and the use recorded in the seal's
  history and the hash-chained audit log (a durable write per seal);
* ``govtrust B-B --workers N`` — N processes sealing at once against the same database;
* ``SM2 SES_Signature`` — :meth:`seal.signdata.SignData.sign` with an SM2 seal: a GB/T 38540
  SES_Signature over 4 KiB of data (SM3 dataHash, SM2 signature through the soft key store,
  the use recorded in the history and audit log), without a time-stamp (the SM2 TSA's own
  signature would double the SM2 work; issue 16 names the SES_Signature rate).

* ``govtrust OFD`` — :meth:`seal.ofd_seal.SealOfd.seal` with the SM2 seal on a one-page OFD:
  the package read within limits, authorisation, a GB/T 38540 SM2 signature over the new
  Signature.xml with the SM2 TSA's time-stamp, the use recorded (beside B-T, informational).

* ``SM2 SES_Signature + time-stamp`` — the same with its timeStamp from the SM2 TSA.

Targets (issue 6): B-B ≥ 10× plain pyHanko; ≥ 100 seals/s with ``--workers 2``; (issue 16)
SM2 SES_Signature over data ≥ 500/s; (issue 22) B-T ≥ 0.5× B-B and SES_Signature with a
time-stamp ≥ 0.5× without, wall-clock in the same run.
Exit status 1 when a target is missed.

Single-process contenders run interleaved in ``--rounds`` rounds; the median round counts.
The B-T rate includes the CA's time-stamping authority (``ca.tsa``) as part of the path: one
RFC 3161 request per seal, in process (no HTTP), its token recorded in the TSA's ledger
before the seal goes on.

Run: ``.venv/bin/python bench/seal.py [--seconds 3] [--workers 2]``
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from govtrust.migrate import upgrade_to_head

TARGET_RATIO_BB = 10.0
TARGET_WORKERS_RATE = 100.0
TARGET_SM2_SES_RATE = 500.0
# issue 22: a time-stamped seal costs close to an untimed one (wall-clock, same run)
TARGET_BT_SHARE = 0.5  # B-T seals/s ≥ half the B-B rate
TARGET_SES_TS_SHARE = 0.5  # SES_Signature with time-stamp ≥ half the rate without


def one_page_pdf() -> bytes:
    """A one-page A4 PDF with a line of text (Helvetica)."""
    content = b"BT /F1 14 Tf 72 700 Td (Contract No. 42 - seal below) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@dataclass(frozen=True)
class Setup:
    """What a worker needs to reopen the world."""

    db_url: str
    master_key: bytes
    seal_id: str
    rep_citizen_id: str
    ca_url: str
    sm2_seal_id: str = ""


def _open(setup: Setup) -> tuple[object, object]:
    from ca.authority import CertificateAuthority
    from ca.config import CaConfig
    from ca.directory import InMemoryDirectory
    from govtrust.db import Database
    from hsm import MasterKey, SoftKeyStore
    from idp.pii import PiiCodec
    from idp.registry import IdentityRegistry
    from seal.authority import CaSealAuthority
    from seal.lifecycle import SealService
    from seal.owners import RegistryOwners
    from seal.pdf import SealPdf

    db = Database(setup.db_url)
    master = MasterKey(setup.master_key)
    keystore = SoftKeyStore(db, master)
    authority = CertificateAuthority.open(
        db, keystore, CaConfig(public_base_url=setup.ca_url), InMemoryDirectory()
    )
    service = SealService(
        db,
        keystore,
        CaSealAuthority(authority, db),
        RegistryOwners(IdentityRegistry(db, PiiCodec.from_master_key(master))),
    )
    return service, SealPdf(service)


def prepare(directory: Path) -> Setup:
    """A database with a company, its representative and an active contract seal."""
    from govtrust.db import Database
    from govtrust.principal import Principal
    from hsm import MasterKey
    from idp.pii import PiiCodec
    from idp.registry import IdentityRegistry
    from idp.types import IdentityRef
    from seal.lifecycle import Application, Making
    from seal.types import SealKind

    url = f"sqlite:///{directory / 'bench.db'}"
    db = Database(url)
    upgrade_to_head(db.engine)
    raw_key = os.urandom(32)
    master = MasterKey(raw_key)
    registrar = Principal("user", "registrar", frozenset({"identity-registrar"}))
    registry = IdentityRegistry(db, PiiCodec.from_master_key(master))
    rep = registry.register_citizen(registrar, name="张三", id_number="11010519491231002X")
    company = registry.register_legal_person(
        registrar,
        uscc="91350100M000100Y43",
        name="福州示例科技有限公司",
        legal_representative=IdentityRef(id=rep.id),
    )
    setup = Setup(url, raw_key, "", rep.id, "http://127.0.0.1:9")
    service, _ = _open(setup)
    from seal.lifecycle import SealService

    assert isinstance(service, SealService)
    admin = Principal("user", "admin", frozenset({"admin"}))
    rep_p = Principal("user", "rep", frozenset(), citizen_id=rep.id)
    maker = Principal("user", "maker", frozenset({"seal-maker"}))  # the reviewer never makes
    seal_ids = []
    for algorithm in ("ec-p256", "sm2"):
        seal = service.apply(
            rep_p,
            Application(IdentityRef(id=company.id), SealKind.CONTRACT, key_algorithm=algorithm),
        )
        service.review(admin, seal.id, True, "ok")
        service.make(maker, seal.id, Making())
        service.file(admin, seal.id, "", "")
        service.issue(admin, seal.id, "")
        seal_ids.append(seal.id)
    db.dispose()
    return Setup(url, setup.master_key, seal_ids[0], rep.id, setup.ca_url, seal_ids[1])


def measure(fn: Callable[[], object], seconds: float, warmup: int = 3) -> tuple[float, float]:
    """(calls per wall-clock second, calls per CPU-second of this process) over ``seconds``.

    The CPU-time rate (the divisor ``openssl speed`` uses) keeps ratios honest when other
    processes compete for this shared machine's two cores; the wall-clock rate includes waits
    (the database's durable commit)."""
    for _ in range(warmup):
        fn()
    count = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn()
        count += 1
    wall = time.perf_counter() - start
    cpu = max(time.process_time() - cpu_start, 1e-9)
    return count / wall, count / cpu


def plain_pyhanko(setup: Setup, pdf: bytes) -> Callable[[], object]:
    """pyHanko's defaults with the seal's certificate and an in-memory copy of the same key
    material shape (a fresh P-256 key: SimpleSigner needs the private key in memory)."""
    from asn1crypto import keys, x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    service, _ = _open(setup)
    from seal.lifecycle import SealService

    assert isinstance(service, SealService)
    seal = service.get(setup.seal_id)
    chain = [x509.Certificate.load(c) for c in service.authority.chain()]
    private = ec.generate_private_key(ec.SECP256R1())
    key = keys.PrivateKeyInfo.load(
        private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert seal.certificate_der is not None
    signer = signers.SimpleSigner(
        x509.Certificate.load(seal.certificate_der), key, SimpleCertificateStore.from_certs(chain)
    )
    meta = signers.PdfSignatureMetadata(field_name="Sig")

    def run() -> object:
        return signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, signer=signer)

    return run


def ours(setup: Setup, pdf: bytes, level: str) -> Callable[[], object]:
    """The product path (authorisation, visible seal, key store, TSA, history + audit)."""
    from govtrust.principal import Principal
    from seal.pdf import PdfSealRequest, SealPdf
    from seal.placement import Position
    from seal.types import PadesLevel

    _, sealer = _open(setup)
    assert isinstance(sealer, SealPdf)
    rep = Principal("user", "rep", frozenset(), citizen_id=setup.rep_citizen_id)
    request = PdfSealRequest(
        setup.seal_id, pdf, Position(1, 150, 220), PadesLevel(level), "contract"
    )

    def run() -> object:
        return sealer.seal(rep, request)

    return run


def one_page_ofd() -> bytes:
    """A one-page A4 OFD document (a framed box; no font needed)."""
    from seal.ofd.model import Box, Document, DocumentInfo, Page, Path, rectangles
    from seal.ofd.writer import write_document

    frame = Path(Box(20, 20, 170, 60), rectangles([(0, 0, 170, 60)]), fill=None, stroke=(0, 0, 0))
    info = DocumentInfo(doc_id="bench", creation_date="2026-12-06", creator="bench")
    return write_document(Document(info, 210, 297, (Page((frame,)),)))


def ours_ofd(setup: Setup, ofd: bytes) -> Callable[[], object]:
    """SealOfd, the product path: the package read within limits, authorisation, the GB/T 38540
    SM2 signature over Signature.xml with the SM2 TSA's time-stamp, the use recorded."""
    from govtrust.principal import Principal
    from seal.ofd_seal import OfdSealRequest, SealOfd
    from seal.placement import Position

    service, _ = _open(setup)
    sealer = SealOfd(service)  # type: ignore[arg-type]
    rep = Principal("user", "rep", frozenset(), citizen_id=setup.rep_citizen_id)
    request = OfdSealRequest(setup.sm2_seal_id, ofd, Position(1, 150, 220), True, "contract")

    def run() -> object:
        return sealer.seal(rep, request)

    return run


def sm2_ses(setup: Setup, *, timestamp: bool = False) -> Callable[[], object]:
    """An SM2 seal's SES_Signature over 4 KiB of data, the product path (SignData); with
    ``timestamp`` its timeStamp from the SM2 TSA (in process, recorded in the TSA's ledger)."""
    from govtrust.principal import Principal
    from seal.signdata import DataRequest, SignData

    service, _ = _open(setup)
    signer = SignData(service)  # type: ignore[arg-type]
    rep = Principal("user", "rep", frozenset(), citizen_id=setup.rep_citizen_id)
    request = DataRequest(setup.sm2_seal_id, data=os.urandom(4096), ses=True, timestamp=timestamp)

    def run() -> object:
        return signer.sign(rep, request)

    return run


def sm2_ses_structure(setup: Setup) -> Callable[[], object]:
    """The SES_Signature alone: SM3 dataHash of 4 KiB, TBS_Sign, SM2 signature through the soft
    key store (no authorisation, no use record)."""
    import hashlib
    from datetime import UTC, datetime

    from hsm.keystore import SignatureScheme
    from seal import structures

    service, _ = _open(setup)
    seal = service.get(setup.sm2_seal_id)  # type: ignore[attr-defined]
    from seal.models import SealRow

    with service.db.read() as session:  # type: ignore[attr-defined]
        row = session.get(SealRow, setup.sm2_seal_id)
        key_id, certificate = row.key_id, row.certificate_der
    data = os.urandom(4096)

    def run() -> object:
        return structures.build_signature(
            structures.SignatureRequest(
                seal.seal_structure, hashlib.new("sm3", data).digest(), "", datetime.now(UTC)
            ),
            service.keystore,  # type: ignore[attr-defined]
            key_id,
            SignatureScheme.SM2_SM3,
            certificate,
        )

    return run


def _worker(
    setup: Setup, pdf: bytes, level: str, seconds: float, barrier: Any, results: Any
) -> None:
    fn = ours(setup, pdf, level)
    for _ in range(3):
        fn()  # warm: imports, caches, connections
    barrier.wait()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn()
        count += 1
    results.put(count / (time.perf_counter() - start))


def parallel(setup: Setup, pdf: bytes, level: str, workers: int, seconds: float) -> float:
    """Total seals per second of ``workers`` processes sealing at once (started together once
    every one is warm)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(setup, pdf, level, seconds, barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    rates = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return float(sum(rates))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    args = parser.parse_args(argv)
    pdf = one_page_pdf()
    with tempfile.TemporaryDirectory() as scratch:
        setup = prepare(Path(scratch))
        contenders = {
            "peer": plain_pyhanko(setup, pdf),
            "bb": ours(setup, pdf, "B-B"),
            "bt": ours(setup, pdf, "B-T"),
            "ses": sm2_ses(setup),
            "sests": sm2_ses(setup, timestamp=True),
            "sesraw": sm2_ses_structure(setup),
            "ofd": ours_ofd(setup, one_page_ofd()),
        }
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):  # interleaved, so load from elsewhere hits all alike
            for name, fn in contenders.items():
                wall, cpu = measure(fn, args.seconds / args.rounds, warmup=1)
                walls[name].append(wall)
                cpus[name].append(cpu)
        names = ("peer", "bb", "bt", "ses", "sests", "sesraw", "ofd")
        peer, bb, bt, ses, sests, sesraw, ofd = (statistics.median(walls[n]) for n in names)
        peer_cpu, bb_cpu, bt_cpu, ses_cpu, sests_cpu, sesraw_cpu, ofd_cpu = (
            statistics.median(cpus[n]) for n in names
        )
        multi = parallel(setup, pdf, "B-B", args.workers, args.seconds)
    print(f"{'contender':<32}{'seals/s':>10}{'× pyHanko':>12}{'seals/CPU-s':>14}{'×':>8}")
    rows = [
        ("pyHanko (SimpleSigner+sign_pdf)", peer, peer_cpu),
        ("govtrust B-B", bb, bb_cpu),
        ("govtrust B-T", bt, bt_cpu),
        ("SM2 SES_Signature (SignData)", ses, ses_cpu),
        ("SM2 SES_Signature + time-stamp", sests, sests_cpu),
        ("SM2 SES_Signature (structure)", sesraw, sesraw_cpu),
        ("govtrust OFD (SM2, time-stamped)", ofd, ofd_cpu),
    ]
    for label, wall, cpu in rows:
        print(f"{label:<32}{wall:>10.1f}{wall / peer:>12.2f}{cpu:>14.1f}{cpu / peer_cpu:>8.2f}")
    print(f"{f'govtrust B-B --workers {args.workers}':<32}{multi:>10.1f}{multi / peer:>12.2f}")
    ratio = max(bb / peer, bb_cpu / peer_cpu)
    ok = ratio >= TARGET_RATIO_BB and multi >= TARGET_WORKERS_RATE
    ses_ok = max(ses, ses_cpu) >= TARGET_SM2_SES_RATE
    print(
        f"targets: B-B ≥ {TARGET_RATIO_BB:.0f}× pyHanko (wall or CPU), ≥ "
        f"{TARGET_WORKERS_RATE:.0f} seals/s with workers: {'met' if ok else 'MISSED'}; "
        f"SM2 SES_Signature (SignData, wall or CPU) ≥ {TARGET_SM2_SES_RATE:.0f}/s: "
        f"{'met' if ses_ok else 'MISSED'}"
    )
    print(
        f"OFD seals (SealOfd, SM2 + SM2 time-stamp) beside PDF B-T (P-256 + time-stamp): "
        f"{ofd / bt:.2f}× wall, {ofd_cpu / bt_cpu:.2f}× CPU (informational)"
    )
    bt_share, sests_share = bt / bb, sests / ses
    timed_ok = bt_share >= TARGET_BT_SHARE and sests_share >= TARGET_SES_TS_SHARE
    print(
        f"time-stamped beside untimed (wall, same run): B-T/B-B {bt_share:.2f}× "
        f"(CPU {bt_cpu / bb_cpu:.2f}×), SES+TS/SES {sests_share:.2f}× "
        f"(CPU {sests_cpu / ses_cpu:.2f}×); targets ≥ {TARGET_BT_SHARE:.1f}× and "
        f"≥ {TARGET_SES_TS_SHARE:.1f}×: {'met' if timed_ok else 'MISSED'}"
    )
    ok = ok and ses_ok and timed_ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
