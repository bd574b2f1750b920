"""The key management centre over gRPC and the CLI (issue 18): ``IssueEncryptionPair``,
``RequestKeyRecovery``, ``ApproveKeyRecovery``, ``DeliverRecoveredKey`` through the real
interceptor (role gate, error mapping) and ``govtrust ca encryption-pair`` / ``recover-key``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ca.authority import SUBJECT_DIRECTORY
from ca.directory import InMemoryDirectory
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.errors import Unauthenticated
from govtrust.platform import Platform
from govtrust.principal import Principal
from govtrust.rpc.auth import set_token_resolver
from govtrust.v1 import certificate_pb2 as pb
from govtrust.v1 import certificate_pb2_grpc, common_pb2
from hsm import MasterKey, SoftKeyStore
from tests.ca.conftest import USCC, openssl
from tests.ca.test_grpc import _Server
from tests.sm2_envelope_judge import open_envelope
from tests.unchanged import unchanged

TOKENS = {
    "operator": Principal("user", "operator", frozenset({"ca-operator"})),
    "officer-1": Principal("user", "officer-1", frozenset({"key-recovery"})),
    "officer-2": Principal("user", "officer-2", frozenset({"key-recovery"})),
    "admin": Principal("user", "root", frozenset({"admin"})),
}
DISTID = "distid:1234567812345678"


def _resolve(_platform: Any, token: str) -> Principal:
    if token not in TOKENS:
        raise Unauthenticated("unknown token")
    return TOKENS[token]


class Served:
    def __init__(self, stub: certificate_pb2_grpc.CertificateServiceStub, address: str) -> None:
        self.stub = stub
        self.address = address


@pytest.fixture
def served(
    database: Database, directory: InMemoryDirectory, tmp_path: Path
) -> Iterator[tuple[Served, SoftKeyStore]]:
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
            stub = certificate_pb2_grpc.CertificateServiceStub(channel)
            yield Served(stub, f"127.0.0.1:{server.port}"), store
    finally:
        set_token_resolver(None)
        store.close()


def _as(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _signing(stub: Any, tmp: Path, name: str) -> tuple[str, Path]:
    """An SM2 legal-person certificate for an openssl key: (serial, key file)."""
    key = tmp / f"{name}.key"
    openssl("genpkey", "-algorithm", "SM2", "-out", str(key))
    csr = tmp / f"{name}.csr"
    openssl(
        "req", "-new", "-key", str(key), "-sm3", "-sigopt", DISTID, "-subj", "/CN=x",
        "-outform", "DER", "-out", str(csr),
    )  # fmt: skip
    response = stub.IssueCertificate(
        pb.IssueCertificateRequest(
            csr=csr.read_bytes(),
            profile=common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON,
            subject=pb.CertificateSubject(identity=common_pb2.IdentityRef(uscc=USCC)),
            applicant=common_pb2.IdentityRef(id="c-rep"),
        ),
        metadata=_as("operator"),
    )
    return response.certificate.summary.serial_number, key


def _spki_of_pem(path: Path) -> bytes:
    from asn1crypto import pem, x509

    _, _, der = pem.unarmor(path.read_bytes())
    return bytes(x509.Certificate.load(der).public_key.dump())


def test_pair_and_recovery_over_grpc_and_the_cli(
    served: tuple[Served, SoftKeyStore],
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from govtrust.cli import main

    server, store = served
    stub, address = server.stub, server.address
    serial, key = _signing(stub, tmp_path, "signing")
    cert_out, envelope_out = tmp_path / "enc.pem", tmp_path / "enc.env"
    client = ["--server", address]
    assert main(["ca", "encryption-pair", serial, "--envelope-out", str(envelope_out),
                 "--out", str(cert_out), *client, "--token", "operator"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    encryption_serial = err.split("serial ")[1].split(" ")[0]
    opened = open_envelope(envelope_out.read_bytes(), key, tmp_path)
    assert opened.public_spki_der == _spki_of_pem(cert_out)
    looked_up = stub.GetCertificate(
        pb.GetCertificateRequest(certificate=pb.CertificateRef(serial_number=serial)),
        metadata=_as("operator"),
    )
    assert looked_up.certificate.status == pb.CERTIFICATE_STATUS_ACTIVE
    assert looked_up.certificate.paired_serial_number == encryption_serial
    encryption = stub.GetCertificate(
        pb.GetCertificateRequest(certificate=pb.CertificateRef(serial_number=encryption_serial)),
        metadata=_as("operator"),
    ).certificate
    assert encryption.paired_serial_number == serial
    assert encryption.summary.profile == common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON_ENCRYPTION

    recipient_serial, recipient_key = _signing(stub, tmp_path, "recipient")
    request = ["ca", "recover-key", "request", encryption_serial, "--legal-basis", "court order 7",
               "--recipient", recipient_serial, *client, "--token", "operator"]  # fmt: skip
    assert main(request) == 0
    recovery_id = capsys.readouterr().out.split(":")[0]
    # admin does not imply key-recovery: the gate refuses
    with unchanged(database, store):
        assert main(["ca", "recover-key", "approve", recovery_id, *client, "--token", "admin"]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    assert main(["ca", "recover-key", "approve", recovery_id, *client, "--token", "officer-1"]) == 0
    assert "PENDING" in capsys.readouterr().out
    with unchanged(database, store):
        assert main(["ca", "recover-key", "approve", recovery_id, *client,
                     "--token", "officer-1"]) == 1  # fmt: skip
    assert "FAILED_PRECONDITION" in capsys.readouterr().err
    delivered = tmp_path / "recovered.env"
    deliver = ["ca", "recover-key", "deliver", recovery_id, "--envelope-out", str(delivered),
               *client, "--token", "operator"]  # fmt: skip
    with unchanged(database, store):
        assert main(deliver) == 1  # one approval only
    assert "two distinct approvals" in capsys.readouterr().err
    assert main(["ca", "recover-key", "approve", recovery_id, *client, "--token", "officer-2"]) == 0
    assert "APPROVED" in capsys.readouterr().out
    assert main(deliver) == 0
    assert "DELIVERED" in capsys.readouterr().out
    recovered = open_envelope(delivered.read_bytes(), recipient_key, tmp_path)
    assert recovered.public_spki_der == _spki_of_pem(cert_out)


def test_grpc_refusals_are_mapped(served: tuple[Served, SoftKeyStore], database: Database) -> None:
    server, store = served
    stub = server.stub
    p256 = stub.GenerateKeyAndIssue(
        pb.GenerateKeyAndIssueRequest(
            profile=common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON,
            subject=pb.CertificateSubject(identity=common_pb2.IdentityRef(uscc=USCC)),
            applicant=common_pb2.IdentityRef(id="c-rep"),
            key_algorithm=common_pb2.KEY_ALGORITHM_EC_P256,
        ),
        metadata=_as("operator"),
    ).certificate.summary.serial_number
    cases: list[tuple[str, Any, str, grpc.StatusCode]] = [
        ("IssueEncryptionPair", pb.IssueEncryptionPairRequest(
            signing_certificate=pb.CertificateRef(serial_number=p256)),
         "operator", grpc.StatusCode.INVALID_ARGUMENT),
        ("IssueEncryptionPair", pb.IssueEncryptionPairRequest(), "operator",
         grpc.StatusCode.INVALID_ARGUMENT),
        ("IssueEncryptionPair", pb.IssueEncryptionPairRequest(
            signing_certificate=pb.CertificateRef(serial_number=p256)),
         "officer-1", grpc.StatusCode.PERMISSION_DENIED),
        ("ApproveKeyRecovery", pb.ApproveKeyRecoveryRequest(recovery_id="nope"), "officer-1",
         grpc.StatusCode.NOT_FOUND),
        ("ApproveKeyRecovery", pb.ApproveKeyRecoveryRequest(), "officer-1",
         grpc.StatusCode.INVALID_ARGUMENT),
        ("DeliverRecoveredKey", pb.DeliverRecoveredKeyRequest(recovery_id="nope"), "operator",
         grpc.StatusCode.NOT_FOUND),
    ]  # fmt: skip
    for method, request, token, code in cases:
        with unchanged(database, store), pytest.raises(grpc.RpcError) as error:
            getattr(stub, method)(request, metadata=_as(token))
        assert error.value.code() == code, (method, error.value.details())


def test_renewal_over_grpc_returns_the_re_keyed_pair(
    served: tuple[Served, SoftKeyStore], tmp_path: Path
) -> None:
    server, _store = served
    stub = server.stub
    serial, _key = _signing(stub, tmp_path, "signing")
    first = stub.IssueEncryptionPair(
        pb.IssueEncryptionPairRequest(signing_certificate=pb.CertificateRef(serial_number=serial)),
        metadata=_as("operator"),
    )
    assert first.signing_certificate.paired_serial_number == (
        first.encryption_certificate.summary.serial_number
    )
    new_key = tmp_path / "new.key"
    openssl("genpkey", "-algorithm", "SM2", "-out", str(new_key))
    csr = tmp_path / "new.csr"
    openssl(
        "req", "-new", "-key", str(new_key), "-sm3", "-sigopt", DISTID, "-subj", "/CN=x",
        "-outform", "DER", "-out", str(csr),
    )  # fmt: skip
    renewed = stub.RenewCertificate(
        pb.RenewCertificateRequest(
            certificate=pb.CertificateRef(serial_number=serial),
            csr=csr.read_bytes(),
            revoke_previous=True,
        ),
        metadata=_as("operator"),
    )
    encryption = renewed.encryption_certificate
    assert encryption.summary.profile == common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON_ENCRYPTION
    assert renewed.certificate.paired_serial_number == encryption.summary.serial_number
    assert encryption.summary.serial_number != first.encryption_certificate.summary.serial_number
    opened = open_envelope(renewed.key_envelope, new_key, tmp_path)
    from asn1crypto import x509

    assert opened.public_spki_der == bytes(
        x509.Certificate.load(encryption.summary.der).public_key.dump()
    )
    old = stub.GetCertificate(
        pb.GetCertificateRequest(
            certificate=pb.CertificateRef(
                serial_number=first.encryption_certificate.summary.serial_number
            )
        ),
        metadata=_as("operator"),
    )
    assert old.certificate.status == pb.CERTIFICATE_STATUS_REVOKED
