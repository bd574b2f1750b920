"""``CertificateService`` over a real grpc.aio server with the govtrust interceptor: issuance from a
CSR and with a generated key, look-ups, paging, status changes, chain and CRL, role checks and
error mapping. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from sqlalchemy import select

from ca.authority import SUBJECT_DIRECTORY
from ca.directory import InMemoryDirectory
from govtrust.api.certificate import servicer
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.errors import Unauthenticated
from govtrust.observability.metrics import get_metrics
from govtrust.platform import Platform
from govtrust.principal import Principal
from govtrust.rpc.auth import Authenticator, set_token_resolver
from govtrust.rpc.interceptors import GovtrustInterceptor
from govtrust.v1 import certificate_pb2 as pb
from govtrust.v1 import certificate_pb2_grpc, common_pb2
from hsm import MasterKey, SoftKeyStore
from tests.ca.conftest import USCC, make_csr
from tests.unchanged import unchanged

TOKENS = {
    "operator": Principal("user", "operator", frozenset({"ca-operator"})),
    "verifier": Principal("user", "bank", frozenset({"verifier"})),
    "citizen": Principal("user", "c-rep", frozenset(), citizen_id="c-rep"),
}


def _resolve(_platform: Any, token: str) -> Principal:
    if token not in TOKENS:
        raise Unauthenticated("unknown token")
    return TOKENS[token]


class _Server:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> _Server:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> int:
        authenticator = Authenticator(cast(Any, self.platform), trust_insecure_loopback=True)
        self.server = grpc.aio.server(
            interceptors=[GovtrustInterceptor(authenticator, get_metrics())]
        )
        certificate_pb2_grpc.add_CertificateServiceServicer_to_server(
            servicer(self.platform), self.server
        )
        port: int = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def served(
    database: Database, directory: InMemoryDirectory, tmp_path: Path
) -> Iterator[tuple[certificate_pb2_grpc.CertificateServiceStub, str]]:
    master = MasterKey.generate()
    store = SoftKeyStore(database, master)
    platform = Platform(
        settings=Settings(data_dir=tmp_path), db=database, master_key=master, keystore=store
    )
    platform.components.define(SUBJECT_DIRECTORY, lambda: directory)
    set_token_resolver(_resolve)
    try:
        with (
            _Server(platform) as server,
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            yield (certificate_pb2_grpc.CertificateServiceStub(channel), f"127.0.0.1:{server.port}")
    finally:
        set_token_resolver(None)
        store.close()


@pytest.fixture
def stub(
    served: tuple[certificate_pb2_grpc.CertificateServiceStub, str],
) -> certificate_pb2_grpc.CertificateServiceStub:
    return served[0]


def _as(token: str) -> tuple[tuple[str, str | bytes], ...]:
    return (("authorization", f"Bearer {token}"),)


def _citizen_subject() -> pb.CertificateSubject:
    return pb.CertificateSubject(identity=common_pb2.IdentityRef(id="c-rep"))


def test_issue_look_up_and_change_status(
    stub: certificate_pb2_grpc.CertificateServiceStub, database: Database
) -> None:
    issued = stub.IssueCertificate(
        pb.IssueCertificateRequest(
            csr=make_csr(),
            profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
            subject=_citizen_subject(),
        ),
        metadata=_as("operator"),
    )
    cert = issued.certificate
    assert cert.status == pb.CERTIFICATE_STATUS_ACTIVE
    assert "IDCCN-11010519491231002X" in cert.summary.subject
    assert [c.issuer_ca for c in issued.chain] == ["root", ""]
    serial = cert.summary.serial_number
    ref = pb.CertificateRef(serial_number=serial)
    got = stub.GetCertificate(pb.GetCertificateRequest(certificate=ref), metadata=_as("verifier"))
    assert got.certificate.summary.der == cert.summary.der
    own = stub.GetCertificate(pb.GetCertificateRequest(certificate=ref), metadata=_as("citizen"))
    assert own.certificate.summary.serial_number == serial

    held = stub.SuspendCertificate(
        pb.SuspendCertificateRequest(certificate=ref, comment="lost"), metadata=_as("operator")
    )
    assert held.certificate.status == pb.CERTIFICATE_STATUS_SUSPENDED
    assert held.certificate.revocation_reason == common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD
    resumed = stub.ResumeCertificate(
        pb.ResumeCertificateRequest(certificate=ref), metadata=_as("operator")
    )
    assert resumed.certificate.status == pb.CERTIFICATE_STATUS_ACTIVE
    revoked = stub.RevokeCertificate(
        pb.RevokeCertificateRequest(
            certificate=ref, reason=common_pb2.REVOCATION_REASON_KEY_COMPROMISE
        ),
        metadata=_as("operator"),
    )
    assert revoked.certificate.status == pb.CERTIFICATE_STATUS_REVOKED
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.ResumeCertificate(
            pb.ResumeCertificateRequest(certificate=ref), metadata=_as("operator")
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    crl = stub.GetCrl(pb.GetCrlRequest(ca="citizen"), metadata=_as("verifier"))
    assert crl.entry_count == 1 and crl.crl_number >= 1
    chain = stub.GetCaChain(pb.GetCaChainRequest(include_responders=True), metadata=_as("verifier"))
    names = [c.name for c in chain.certificates]
    assert names[:5] == ["root", "citizen", "legal-person", "seal", "service"] and "tsa" in names


def test_generate_key_renew_and_list(stub: certificate_pb2_grpc.CertificateServiceStub) -> None:
    generated = stub.GenerateKeyAndIssue(
        pb.GenerateKeyAndIssueRequest(
            profile=common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON,
            subject=pb.CertificateSubject(identity=common_pb2.IdentityRef(uscc=USCC)),
            key_algorithm=common_pb2.KEY_ALGORITHM_EC_P384,
            applicant=common_pb2.IdentityRef(id="c-rep"),
        ),
        metadata=_as("operator"),
    )
    assert generated.key.key_id and generated.key.public_key
    assert generated.key.algorithm == common_pb2.KEY_ALGORITHM_EC_P384
    assert not hasattr(generated.key, "private_key")
    renewed = stub.RenewCertificate(
        pb.RenewCertificateRequest(
            certificate=pb.CertificateRef(
                fingerprint_sha256=generated.certificate.summary.fingerprint_sha256
            ),
            generate_key_algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
            revoke_previous=True,
        ),
        metadata=_as("operator"),
    )
    assert renewed.key.key_id != generated.key.key_id
    assert renewed.previous.status == pb.CERTIFICATE_STATUS_REVOKED
    for _ in range(3):
        stub.IssueCertificate(
            pb.IssueCertificateRequest(
                csr=make_csr(),
                profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
                subject=_citizen_subject(),
            ),
            metadata=_as("operator"),
        )
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListCertificates(
            pb.ListCertificatesRequest(page_size=2, page_token=token), metadata=_as("verifier")
        )
        seen += [c.summary.serial_number for c in page.certificates]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    active = stub.ListCertificates(
        pb.ListCertificatesRequest(
            status=pb.CERTIFICATE_STATUS_ACTIVE, profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN
        ),
        metadata=_as("verifier"),
    )
    assert len(active.certificates) == 3


def test_errors_are_mapped(
    stub: certificate_pb2_grpc.CertificateServiceStub, database: Database
) -> None:
    # The first call bootstraps the hierarchy (keys, issuers); the refusals below store nothing.
    stub.GetCaChain(pb.GetCaChainRequest(), metadata=_as("verifier"))
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.IssueCertificate(
            pb.IssueCertificateRequest(
                csr=b"garbage",
                profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
                subject=_citizen_subject(),
            ),
            metadata=_as("operator"),
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(cast(Any, info.value))
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in status.details)
    assert bad_request.field_violations[0].field == "csr"
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.IssueCertificate(
            pb.IssueCertificateRequest(csr=make_csr(), subject=_citizen_subject()),
            metadata=_as("operator"),
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.IssueCertificate(
            pb.IssueCertificateRequest(
                csr=make_csr(),
                profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
                subject=_citizen_subject(),
            ),
            metadata=_as("verifier"),
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.ListCertificates(pb.ListCertificatesRequest(), metadata=_as("citizen"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.GetCertificate(
            pb.GetCertificateRequest(certificate=pb.CertificateRef(serial_number="ABCDEF")),
            metadata=_as("verifier"),
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.GetCrl(pb.GetCrlRequest(ca="nope"), metadata=_as("verifier"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_cli(
    served: tuple[certificate_pb2_grpc.CertificateServiceStub, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from govtrust.cli import main
    from tests.ca.conftest import openssl

    address = served[1]
    assert main(["ca", "chain", "--server", address]) == 0
    chain = capsys.readouterr().out
    # both hierarchies (issue 16 item 2): ECDSA root + 4 issuing CAs, SM2 root + 4 issuing CAs
    assert chain.count("BEGIN CERTIFICATE") == 10
    assert "# sm2-root: CN=govtrust SM2 Root CA" in chain
    (tmp_path / "chain.pem").write_text(chain)
    csr = tmp_path / "req.pem"
    csr.write_bytes(make_csr())
    out = tmp_path / "cert.pem"
    assert (
        main(
            [
                "ca",
                "issue",
                "--server",
                address,
                "--profile",
                "service",
                "--system-id",
                "bizsys",
                "--dns",
                "biz.example.gov.cn",
                "--csr",
                str(csr),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    serial = capsys.readouterr().err.split("serial ")[1].split(":")[0]
    assert "OK" in openssl("verify", "-CAfile", str(tmp_path / "chain.pem"), str(out))
    assert main(["ca", "suspend", "--server", address, serial, "--comment", "cli"]) == 0
    assert "SUSPENDED" in capsys.readouterr().out
    assert main(["ca", "resume", "--server", address, serial]) == 0
    assert main(["ca", "revoke", "--server", address, serial, "--reason", "keyCompromise"]) == 0
    assert "REVOKED" in capsys.readouterr().out
    assert main(["ca", "revoke", "--server", address, serial]) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err
    crl = tmp_path / "service.crl"
    assert main(["ca", "crl", "service", "--server", address, "--out", str(crl)]) == 0
    text = openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        str(crl),
        "-CAfile",
        str(tmp_path / "chain.pem"),
        "-noout",
        "-text",
    )
    assert "verify OK" in text and serial.zfill(len(serial) + len(serial) % 2) in text
    assert (
        main(
            [
                "ca",
                "issue",
                "--server",
                address,
                "--profile",
                "citizen",
                "--identity",
                "c-rep",
                "--generate",
                "ec-p256",
            ]
        )
        == 0
    )
    assert "key in the key store" in capsys.readouterr().err


def _key_count(database: Database) -> int:
    from hsm.models import HsmKey

    with database.read() as session:
        return len(session.scalars(select(HsmKey.key_id)).all())


def test_an_unknown_commit_outcome_is_unavailable(
    stub: certificate_pb2_grpc.CertificateServiceStub,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection was lost after COMMIT and the database could not be asked: UNAVAILABLE
    saying the certificate may have been issued, and a generated key is not destroyed."""
    import psycopg

    from ca.store import GroupCommitter, _CommitOutcomeUnknown

    def lost(_self: GroupCommitter, _batch: object) -> None:
        raise _CommitOutcomeUnknown("lost") from psycopg.OperationalError("lost")

    def down(_self: GroupCommitter, *_args: object) -> bool:
        raise psycopg.OperationalError("connection refused")

    destroyed: list[object] = []
    stub.GetCaChain(pb.GetCaChainRequest(), metadata=_as("verifier"))  # bootstraps the hierarchy
    keys = _key_count(database)
    monkeypatch.setattr(GroupCommitter, "_write", lost)
    monkeypatch.setattr(GroupCommitter, "_stored", down)
    monkeypatch.setattr(SoftKeyStore, "destroy", lambda _self, ref: destroyed.append(ref))
    with unchanged(database), pytest.raises(grpc.RpcError) as info:
        stub.IssueCertificate(
            pb.IssueCertificateRequest(
                csr=make_csr(),
                profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
                subject=_citizen_subject(),
            ),
            metadata=_as("operator"),
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "may have been issued" in str(info.value.details())
    # the generated key is kept on purpose (the certificate may be stored): its hsm_keys row
    # is the one change
    with unchanged(database, allow=["hsm_keys"]), pytest.raises(grpc.RpcError) as info:
        stub.GenerateKeyAndIssue(
            pb.GenerateKeyAndIssueRequest(
                profile=common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON,
                subject=pb.CertificateSubject(identity=common_pb2.IdentityRef(uscc=USCC)),
                key_algorithm=common_pb2.KEY_ALGORITHM_EC_P384,
                applicant=common_pb2.IdentityRef(id="c-rep"),
            ),
            metadata=_as("operator"),
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not destroyed and _key_count(database) == keys + 1


def test_cli_generates_an_sm2_key_and_the_sm2_ca_certifies_it(
    served: tuple[certificate_pb2_grpc.CertificateServiceStub, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from govtrust.cli import main

    stub, address = served
    out = tmp_path / "sm2.pem"
    args = ["ca", "issue", "--server", address, "--profile", "service", "--system-id", "bizsys"]
    assert main([*args, "--generate", "sm2", "--out", str(out)]) == 0
    assert "# key in the key store:" in capsys.readouterr().err
    generated = stub.GenerateKeyAndIssue(
        pb.GenerateKeyAndIssueRequest(
            profile=common_pb2.CERTIFICATE_PROFILE_SERVICE,
            subject=pb.CertificateSubject(service=pb.ServiceSubject(system_id="bizsys")),
            key_algorithm=common_pb2.KEY_ALGORITHM_SM2,
        ),
        metadata=_as("operator"),
    )
    assert generated.key.algorithm == common_pb2.KEY_ALGORITHM_SM2
    assert generated.certificate.summary.issuer_ca == "sm2-service"
    assert any("SM2 Root CA" in c.subject for c in generated.chain)
    assert "SM2 Service CA" in generated.certificate.summary.issuer
