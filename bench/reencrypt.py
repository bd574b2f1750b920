"""``govtrust reencrypt`` on a live-sized database: killed mid-way, resumed, every row checked.

1. A fresh instance on PostgreSQL (``--database sqlite`` for the embedded one) with N citizens
   (default 100,000; every other one with a phone) and M licences (default 10,000; signed data,
   QR payload and a PDF document of ``--document-bytes``), written under AES-256-GCM through the
   owners' bulk loaders (``IdentityRegistry.bulk_register_citizens``,
   ``license.loader.load_licences``).
2. ``govtrust reencrypt --to sm4-gcm`` as a subprocess; when its progress line on stderr shows
   half the rows done (the event it reports after committing a batch), it is killed with
   SIGKILL. Rows are counted per scheme: some moved, some not, none unreadable.
3. The same command again, to the end: it skips the moved rows and moves the rest.
4. Every row is read and decrypted: each value is under SM4-GCM, equals what was loaded (so none
   is lost and none encrypted twice) and no ID number appears in clear; a look-up by ID number
   still finds its citizen (blind indexes unchanged).
5. Back with ``--to aes-256-gcm`` uninterrupted (the clean throughput figure), checked again.

Prints the times and rows/s of each run; exits 1 if any check fails.
Run: ``.venv/bin/python bench/reencrypt.py [--citizens 100000] [--licences 10000]``
``[--database postgresql|sqlite] [--batch-size 500]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("GOVTRUST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REGIONS = ("350102", "350103", "350104", "350105", "350111", "110105", "310104", "440305")
_PROGRESS = re.compile(r"(\d+)/(\d+) rows")


def citizen(i: int) -> tuple[str, str, str]:
    """The ``i``-th citizen: (name, resident ID number, phone or ""), distinct for every ``i``."""
    from idp.identifiers import resident_id_check_digit

    region = REGIONS[i % len(REGIONS)]
    birth = date(1950, 1, 1) + timedelta(days=i // (1000 * len(REGIONS)) * 37 + i % 97)
    first17 = f"{region}{birth:%Y%m%d}{(i // len(REGIONS)) % 1000:03d}"
    phone = f"139{i:08d}" if i % 2 == 0 else ""
    return f"居民{i:06d}", first17 + resident_id_check_digit(first17), phone


def licence_secrets(j: int, number: str, document_bytes: int) -> tuple[str, str, bytes]:
    """Signed data, QR payload and document of licence ``j`` (held by ``number``)."""
    signed = f"eyJhbGciOiJFUzI1NiJ9.{number}.{j:08d}." + "s" * 600
    qr = f"GT1:{j:08d}:{number}:" + "q" * 200
    document = b"%PDF-1.7\n" + hashlib.shake_256(f"doc{j}".encode()).digest(document_bytes)
    return signed, qr, document


@dataclass
class Population:
    """What was loaded, to check every row against afterwards."""

    citizens: dict[str, int] = field(default_factory=dict)  # identity id -> i
    licences: dict[str, tuple[int, int]] = field(default_factory=dict)  # identifier -> (j, i)
    document_bytes: int = 0

    @property
    def rows(self) -> int:
        return len(self.citizens) + len(self.licences)


def populate(platform: object, citizens: int, licences: int, document_bytes: int) -> Population:
    """Load the citizens and licences through their owners' bulk functions (AES-256-GCM)."""
    from govtrust.platform import Platform
    from govtrust.principal import Principal
    from idp.registry import IdentityRegistry
    from license import catalogue
    from license.loader import BulkLicence, load_licences
    from license.vault import LicenceVault

    assert isinstance(platform, Platform)
    admin = Principal(kind="operator", subject="bench", roles=frozenset({"admin"}))
    registry = IdentityRegistry.open(platform.db, platform.master_key)
    people = [citizen(i) for i in range(citizens)]
    ids = registry.bulk_register_citizens(admin, people)
    population = Population(document_bytes=document_bytes)
    population.citizens = {cid: i for i, cid in enumerate(ids)}
    with platform.db.transaction() as session:
        catalogue.seed_catalogue(session, admin)
    items: list[BulkLicence] = []
    for j in range(licences):
        i = j % max(citizens, 1)
        signed, qr, document = licence_secrets(j, people[i][1], document_bytes)
        items.append(
            BulkLicence(
                type_code=catalogue.BUSINESS_LICENCE_CODE,
                issuer_code=catalogue.EXAMPLE_ISSUER,
                serial=f"B{j:09d}",
                licence_number=f"No.{j:09d}",
                holder_identity_id=ids[i],
                holder_code_type="111",
                signed_data=signed,
                qr_payload=qr,
                valid_from=date(2026, 1, 1),
                signing_key_id="bench",
                document_pdf=document,
            )
        )
    identifiers = load_licences(
        platform.db, LicenceVault(platform.master_key), items, actor=admin.actor
    )
    population.licences = {ident: (j, j % max(citizens, 1)) for j, ident in enumerate(identifiers)}
    return population


def command(data_dir: Path, to: str, batch_size: int) -> list[str]:
    return [
        sys.executable, "-m", "govtrust", "reencrypt", "--to", to,
        "--data-dir", str(data_dir), "--batch-size", str(batch_size),
    ]  # fmt: skip


def environment(database_url: str) -> dict[str, str]:
    return {
        "GOVTRUST_DATABASE_URL": database_url,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
    }


def run_killed(cmd: Sequence[str], env: dict[str, str], fraction: float) -> tuple[float, int, int]:
    """Run ``cmd`` and SIGKILL it once its progress line shows ``fraction`` of the rows done.

    Returns (seconds until killed, rows it reported done, exit status). The progress line is
    written after a batch commits, so at least that many rows had moved."""
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    done = 0
    for line in process.stderr:
        match = _PROGRESS.search(line)
        if match and int(match[1]) >= fraction * int(match[2]):
            done = int(match[1])
            process.send_signal(signal.SIGKILL)
            break
    status = process.wait()
    process.stderr.close()
    return time.perf_counter() - started, done, status


def run_to_end(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``cmd`` to the end; (seconds, stdout). Raises on a non-zero exit."""
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:5])} exited {result.returncode}: {result.stderr}")
    return seconds, result.stdout


@dataclass
class Census:
    """Rows by scheme after a run, and what failed the checks."""

    schemes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def census(platform: object, population: Population, *, expect: str | None) -> Census:
    """Read and decrypt every row; each value must equal what was loaded, no ID number may be
    stored in clear, and (with ``expect``) every value must be under that scheme."""
    from sqlalchemy import select

    from govtrust.platform import Platform
    from hsm.atrest import scheme_of
    from idp.models import CitizenRow
    from idp.pii import PURPOSE_ID_NUMBER, PURPOSE_PHONE, PiiCodec
    from license.models import LicenceRow
    from license.vault import DOCUMENT, QR_PAYLOAD, SIGNED_DATA, LicenceVault

    assert isinstance(platform, Platform)
    codec = PiiCodec.from_master_key(platform.master_key)
    vault = LicenceVault(platform.master_key)
    found = Census()

    def note(scheme: str) -> None:
        found.schemes[scheme] = found.schemes.get(scheme, 0) + 1

    with platform.db.read() as session:
        for cid, number_enc, phone_enc in session.execute(
            select(CitizenRow.id, CitizenRow.id_number_enc, CitizenRow.phone_enc)
        ):
            _name, number, phone = citizen(population.citizens[cid])
            for blob, plain, purpose in (
                (number_enc, number, PURPOSE_ID_NUMBER),
                (phone_enc, phone, PURPOSE_PHONE),
            ):
                if not plain or blob is None:
                    if bool(plain) != (blob is not None):
                        found.problems.append(
                            f"{cid}: {purpose} stored wrongly (given: {bool(plain)})"
                        )
                    continue
                scheme = scheme_of(blob).value
                note(scheme)
                if number.encode() in blob or plain.encode() in blob:
                    found.problems.append(f"{cid}: {purpose} in clear")
                if codec.decrypt(blob, purpose) != plain:
                    found.problems.append(f"{cid}: {purpose} decrypts to something else")
                if expect is not None and scheme != expect:
                    found.problems.append(f"{cid}: {purpose} under {scheme}")
        for row in session.execute(
            select(
                LicenceRow.identifier,
                LicenceRow.signed_data,
                LicenceRow.qr_payload,
                LicenceRow.document_pdf,
            )
        ):
            ident = row.identifier
            j, i = population.licences[ident]
            signed, qr, document = licence_secrets(j, citizen(i)[1], population.document_bytes)
            checks = (
                (
                    SIGNED_DATA,
                    vault.scheme_of_text(row.signed_data, SIGNED_DATA, ident),
                    vault.open_text(row.signed_data, SIGNED_DATA, ident) == signed,
                ),
                (
                    QR_PAYLOAD,
                    vault.scheme_of_text(row.qr_payload, QR_PAYLOAD, ident),
                    vault.open_text(row.qr_payload, QR_PAYLOAD, ident) == qr,
                ),
                (
                    DOCUMENT,
                    vault.scheme_of(row.document_pdf, DOCUMENT, ident),
                    vault.open(row.document_pdf, DOCUMENT, ident) == document,
                ),
            )
            for column, scheme, equal in checks:
                note(scheme.value)
                if not equal:
                    found.problems.append(f"{ident}: {column} decrypts to something else")
                if expect is not None and scheme.value != expect:
                    found.problems.append(f"{ident}: {column} under {scheme.value}")
            if citizen(i)[1].encode() in (row.signed_data.encode() + row.document_pdf):
                found.problems.append(f"{ident}: holder's ID number in clear")
    seen = len(found.problems)
    if seen > 20:
        found.problems = [*found.problems[:20], f"... {seen - 20} more"]
    return found


def lookup_works(platform: object, population: Population) -> bool:
    """A citizen is still found by ID number (the blind index does not depend on the scheme)."""
    from govtrust.platform import Platform
    from govtrust.principal import Principal
    from idp.registry import IdentityRegistry
    from idp.types import IdentityRef

    assert isinstance(platform, Platform)
    verifier = Principal(kind="operator", subject="bench", roles=frozenset({"verifier"}))
    registry = IdentityRegistry.open(platform.db, platform.master_key)
    cid, i = next(iter(population.citizens.items()))
    found = registry.get_citizen(verifier, IdentityRef(resident_id_number=citizen(i)[1]))
    return found.id == cid


def make_database(kind: str) -> str | None:
    """A fresh PostgreSQL database URL, or None for SQLite in the data directory."""
    if kind == "sqlite":
        return None
    import psycopg

    name = f"gt_bench_reenc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str | None) -> None:
    if url is None:
        return
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=100_000)
    parser.add_argument("--licences", type=int, default=10_000)
    parser.add_argument("--document-bytes", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    args = parser.parse_args(argv)

    from govtrust.config import Settings
    from govtrust.server.wiring import open_wired

    url = make_database(args.database)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gt-reencrypt-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = Settings(data_dir=data_dir, database_url=url)
        effective = settings.effective_database_url
        platform = open_wired(settings)
        try:
            started = time.perf_counter()
            population = populate(platform, args.citizens, args.licences, args.document_bytes)
            print(f"loaded {len(population.citizens)} citizens and {len(population.licences)} "
                  f"licences ({args.document_bytes}-byte documents) under aes-256-gcm in "
                  f"{time.perf_counter() - started:.1f} s on {args.database}")  # fmt: skip
            env = environment(effective)
            killed_s, done, status = run_killed(
                command(data_dir, "sm4-gcm", args.batch_size), env, 0.5
            )
            after_kill = census(platform, population, expect=None)
            print(f"run 1 killed (SIGKILL, exit {status}) after {killed_s:.1f} s at {done} rows "
                  f"reported done; values by scheme now {after_kill.schemes}")  # fmt: skip
            if status != -signal.SIGKILL or len(after_kill.schemes) != 2:
                failures.append("run 1 was not interrupted mid-way")
            failures += after_kill.problems
            resumed_s, out = run_to_end(command(data_dir, "sm4-gcm", args.batch_size), env)
            print(f"run 2 (resumed) {resumed_s:.1f} s:\n  " + out.strip().replace("\n", "\n  "))
            final = census(platform, population, expect="sm4-gcm")
            failures += final.problems
            if not lookup_works(platform, population):
                failures.append("look-up by ID number failed after re-encryption")
            print(f"checked {population.rows} rows: values by scheme {final.schemes}; "
                  f"{len(final.problems)} problems")  # fmt: skip
            back_s, out = run_to_end(command(data_dir, "aes-256-gcm", args.batch_size), env)
            print(f"back to aes-256-gcm, uninterrupted {back_s:.1f} s "
                  f"({population.rows / back_s:,.0f} rows/s incl. start-up):\n  "
                  + out.strip().replace("\n", "\n  "))  # fmt: skip
            back = census(platform, population, expect="aes-256-gcm")
            failures += back.problems
            print(f"sm4-gcm, killed + resumed: {killed_s + resumed_s:.1f} s in all for "
                  f"{population.rows} rows")  # fmt: skip
        finally:
            platform.close()
            drop_database(url)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures[:20]))
        return 1
    print("every row readable, under the expected scheme, equal to what was loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
