"""Key management centre throughput (issue 18), in process on SQLite in a temp dir.

1. **Encryption pairs**: ``--pairs`` SM2 legal-person signing certificates (keys generated in the
   soft key store), then one ``issue_encryption_pair`` each: escrowed SM2 key (SM4-GCM under the
   KMC key), encryption certificate signed SM3-with-SM2, envelope to the signing key, OCSP
   response, pairing and audit record in one transaction.
2. **Envelopes**: ``KeyStore.export_enveloped`` of one escrowed key to one SM2 public key
   (unwrap, SM2 encryption of a fresh SM4 key, SM4 of the private key) for ``--seconds``.
3. **Recoveries**: request, two approvals and delivery, ``--recoveries`` times.

No peer: no open KMC exists to run beside it (issue 18); the floor is printed instead — bare SM2
encryption of 16 bytes (gmalglib, what each envelope does once). Informational (no target).

Run: ``.venv/bin/python bench/kmc.py [--pairs 100]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ca import issuance
from ca.authority import CertificateAuthority
from ca.config import CaConfig
from ca.directory import CitizenRecord, InMemoryDirectory, LegalPersonRecord
from ca.issuance import SubjectSpec
from govtrust.db import Database
from govtrust.migrate import upgrade_to_head
from govtrust.principal import Principal
from hsm import MasterKey, SoftKeyStore
from hsm.sm2 import Sm2PrivateKey, sm2_encrypt

USCC = "91350100M000100Y43"
OPERATOR = Principal("service", "bench", frozenset({"ca-operator"}), citizen_id="c-rep")
OFFICERS = [Principal("user", f"officer-{i}", frozenset({"key-recovery"})) for i in (1, 2)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--recoveries", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'kmc.db'}")
        upgrade_to_head(db.engine)
        store = SoftKeyStore(db, MasterKey.generate())
        directory = InMemoryDirectory()
        directory.add_citizen(CitizenRecord("c-rep", "张三", "11010519491231002X", 3))
        directory.add_legal_person(
            LegalPersonRecord("lp-1", USCC, "福州示例科技有限公司"), representatives=("c-rep",)
        )
        authority = CertificateAuthority.open(
            db, store, CaConfig(public_base_url="http://pki.example.gov.cn"), directory
        )
        request = issuance.IssueRequest(
            profile="legal-person", subject=SubjectSpec(USCC), generate_key_algorithm="sm2"
        )
        signing = [authority.issue(OPERATOR, request).certificate for _ in range(args.pairs)]
        start = time.perf_counter()
        pairs = [authority.issue_encryption_pair(OPERATOR, row.id) for row in signing]
        elapsed = time.perf_counter() - start
        print(f"encryption pairs: {len(pairs)} in {elapsed:.2f} s = {len(pairs) / elapsed:.1f}/s")

        recipient = Sm2PrivateKey.generate().public_key_der
        escrowed = pairs[0].encryption.escrow_key_id
        assert escrowed is not None
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            store.export_enveloped(escrowed, recipient)
            count += 1
        elapsed = time.perf_counter() - start
        print(f"envelopes: {count} in {elapsed:.2f} s = {count / elapsed:.1f}/s")

        point = Sm2PrivateKey.generate().public_point
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            sm2_encrypt(point, b"0123456789abcdef")
            count += 1
        elapsed = time.perf_counter() - start
        print(f"floor, bare SM2 encryption: {count / elapsed:.1f}/s")

        target = signing[0].id
        start = time.perf_counter()
        for pair in pairs[: args.recoveries]:
            found = authority.request_key_recovery(
                OPERATOR, pair.encryption.id, legal_basis="bench", recipient_certificate_id=target
            )
            for officer in OFFICERS:
                authority.approve_key_recovery(officer, found.record.id)
            authority.deliver_recovered_key(OPERATOR, found.record.id)
        elapsed = time.perf_counter() - start
        done = min(args.recoveries, len(pairs))
        print(f"recoveries (request + 2 approvals + delivery): {done} in {elapsed:.2f} s = "
              f"{done / elapsed:.1f}/s")  # fmt: skip
        store.close()
        db.dispose()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
