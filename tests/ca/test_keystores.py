"""Both key-store backends (soft and PKCS#11 on SoftHSM2) bootstrap the hierarchy, issue (from a
CSR and with a key generated in the store), sign CRLs, OCSP responses and time-stamps that the
real openssl verifies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ca.authority import CertificateAuthority
from ca.config import CaConfig
from ca.context import PKCS11_ISSUE_THREADS
from ca.directory import InMemoryDirectory
from ca.issuance import IssueRequest, SubjectSpec
from govtrust.db import Database
from hsm import KeyStore, MasterKey, Pkcs11KeyStore, SoftKeyStore
from tests.ca.conftest import OPERATOR, PUBLIC_URL, USCC, make_csr, openssl, pem, write_chain


@pytest.fixture(params=["soft", "pkcs11"])
def backend_store(request: pytest.FixtureRequest, database: Database) -> Iterator[KeyStore]:
    store: KeyStore
    if request.param == "soft":
        store = SoftKeyStore(database, MasterKey.generate())
    else:
        token: Any = request.getfixturevalue("ca_softhsm_token")
        store = Pkcs11KeyStore(token.module, token.label, token.pin)
    yield store
    store.close()


def test_backend_issues_and_signs_everything(
    backend_store: KeyStore, database: Database, directory: InMemoryDirectory, tmp_path: Path
) -> None:
    config = CaConfig(
        public_base_url=PUBLIC_URL, root_key_algorithm="rsa-3072", tsa_key_algorithm="rsa-2048"
    )
    authority = CertificateAuthority.open(database, backend_store, config, directory)
    chain = write_chain(authority, tmp_path / "chain")
    from_csr = authority.issue(
        OPERATOR, IssueRequest("citizen", SubjectSpec(identity="c-rep"), csr=make_csr())
    ).certificate
    generated = authority.issue(
        OPERATOR,
        IssueRequest("legal-person", SubjectSpec(identity=USCC), generate_key_algorithm="ec-p256"),
    )
    assert generated.key is not None
    for name, row in (("csr", from_csr), ("generated", generated.certificate)):
        path = tmp_path / f"{name}.pem"
        path.write_text(pem(row.der))
        assert "OK" in openssl(
            "verify", "-CAfile", str(chain.root), "-untrusted", str(chain.all), str(path)
        )
    authority.revoke(OPERATOR, from_csr.id, reason="keyCompromise")
    for ca in ("citizen", "root"):
        crl_path = tmp_path / f"{ca}.crl"
        crl_path.write_bytes(authority.crl(ca).der)
        assert "verify OK" in openssl(
            "crl", "-inform", "DER", "-in", str(crl_path), "-CAfile", str(chain.all), "-noout"
        )
    cert_path = tmp_path / "csr.pem"
    request = tmp_path / "req.der"
    openssl(
        "ocsp",
        "-issuer",
        str(chain.ca("citizen")),
        "-cert",
        str(cert_path),
        "-reqout",
        str(request),
    )
    response = tmp_path / "resp.der"
    response.write_bytes(authority.ocsp(request.read_bytes()))
    out = openssl(
        "ocsp",
        "-respin",
        str(response),
        "-issuer",
        str(chain.ca("citizen")),
        "-CAfile",
        str(chain.all),
        "-resp_text",
    )
    assert "Response verify OK" in out and "Cert Status: revoked" in out
    data = tmp_path / "data.bin"
    data.write_bytes(b"data")
    query = tmp_path / "q.tsq"
    openssl("ts", "-query", "-data", str(data), "-sha384", "-cert", "-out", str(query))
    result = authority.timestamp(query.read_bytes())
    assert result.granted
    reply = tmp_path / "r.tsr"
    reply.write_bytes(result.der)
    assert "Verification: OK" in openssl(
        "ts",
        "-verify",
        "-data",
        str(data),
        "-in",
        str(reply),
        "-CAfile",
        str(chain.root),
        "-untrusted",
        str(chain.all),
    )


def test_intake_threads_follow_what_the_store_says_of_its_signing(
    backend_store: KeyStore, database: Database, directory: InMemoryDirectory
) -> None:
    """The CA asks the key store, not its class: a store whose signatures wait on a device gets
    at least PKCS11_ISSUE_THREADS intake threads, a CPU-bound one the configured count."""
    authority = CertificateAuthority.open(
        database, backend_store, CaConfig(public_base_url=PUBLIC_URL, issue_threads=1), directory
    )
    on_device = isinstance(backend_store, Pkcs11KeyStore)
    assert backend_store.signs_on_device is on_device
    assert authority.ctx.intake.threads == (PKCS11_ISSUE_THREADS if on_device else 1)
