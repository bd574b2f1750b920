"""RFC 3161 against an independent client (issue #23, item 2): requests made by
``openssl ts -query``, answers read by ``openssl ts -reply -text`` and ``openssl ts -verify
-queryfile`` (which checks the imprint, the policy and the nonce against the request). The
failure statuses are checked as literal DER (RFC 3161 §2.4.2: rejection = 2; PKIFailureInfo
badAlg = bit 0, badDataFormat = bit 5, unacceptedPolicy = bit 15), and a refusal stores no
token."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import tsp
from sqlalchemy import func, select

from ca.authority import CertificateAuthority
from ca.models import CaTsaToken
from tests.ca.conftest import ChainFiles, openssl, write_chain

REJECTION = bytes.fromhex("020102")  # PKIStatus rejection (2)
FAIL_INFO_DER = {
    "bad_alg": bytes.fromhex("03020780"),  # bit 0
    "bad_data_format": bytes.fromhex("03020204"),  # bit 5
    "unaccepted_policy": bytes.fromhex("0303000001"),  # bit 15
}
# openssl's wording of the failure bits (crypto/ts/ts_rsp_print.c)
FAIL_INFO_TEXT = {
    "bad_alg": "unrecognized or unsupported algorithm identifier",
    "bad_data_format": "the data submitted has the wrong format",
    "unaccepted_policy": "the requested tsa policy is not supported by the tsa",
}


@pytest.fixture
def chain(authority: CertificateAuthority, tmp_path: Path) -> ChainFiles:
    return write_chain(authority, tmp_path / "chain")


def _tokens(authority: CertificateAuthority) -> int:
    with authority.ctx.db.read() as session:
        return session.scalar(select(func.count()).select_from(CaTsaToken)) or 0


def _query(tmp_path: Path, *options: str) -> Path:
    data = tmp_path / "document.txt"
    data.write_bytes("待盖时间戳的电子证照".encode())
    query = tmp_path / "request.tsq"
    openssl("ts", "-query", "-data", str(data), *options, "-out", str(query))
    return query


def _answer(authority: CertificateAuthority, tmp_path: Path, request: bytes) -> Path:
    reply = tmp_path / "reply.tsr"
    reply.write_bytes(authority.timestamp(request).der)
    return reply


def _verify(chain: ChainFiles, query: Path, reply: Path) -> str:
    """openssl checks the signature, the chain, and the imprint, policy and nonce of ``query``."""
    untrusted = chain.directory / "untrusted.pem"  # the CAs and the TSA (certReq may be off)
    untrusted.write_text(chain.all.read_text() + chain.ca("tsa").read_text())
    return openssl(
        "ts", "-verify", "-queryfile", str(query), "-in", str(reply),
        "-CAfile", str(chain.root), "-untrusted", str(untrusted),
    )  # fmt: skip


@pytest.mark.parametrize("digest", ["-sha256", "-sha384", "-sha512"])
def test_nonce_and_cert_req_are_honoured(
    authority: CertificateAuthority, chain: ChainFiles, tmp_path: Path, digest: str
) -> None:
    query = _query(tmp_path, digest, "-cert")
    request = tsp.TimeStampReq.load(query.read_bytes())
    assert request["nonce"].native is not None and request["cert_req"].native is True
    before = _tokens(authority)
    reply = _answer(authority, tmp_path, query.read_bytes())
    assert "Verification: OK" in _verify(chain, query, reply)
    token = tsp.TimeStampResp.load(reply.read_bytes())["time_stamp_token"]["content"]
    info = token["encap_content_info"]["content"].parsed
    assert info["nonce"].native == request["nonce"].native
    assert info["message_imprint"].dump() == request["message_imprint"].dump()
    # certReq: the TSA certificate and its chain without the root (the Service CA); a SET
    certificates = [c.chosen for c in token["certificates"]]
    assert len(certificates) == 2
    assert all(c.subject != c.issuer for c in certificates)  # no self-signed root
    tsa_cert, issuer = sorted(certificates, key=lambda c: bool(c.ca))  # end entity first
    assert tsa_cert.issuer == issuer.subject and issuer.ca and not tsa_cert.ca
    text = openssl("ts", "-reply", "-in", str(reply), "-text")
    assert "Status: Granted." in text
    (nonce_line,) = [line for line in text.splitlines() if line.startswith("Nonce: 0x")]
    assert int(nonce_line.removeprefix("Nonce: 0x"), 16) == request["nonce"].native
    assert _tokens(authority) == before + 1


def test_without_nonce_or_cert_req(
    authority: CertificateAuthority, chain: ChainFiles, tmp_path: Path
) -> None:
    query = _query(tmp_path, "-sha256", "-no_nonce")
    request = tsp.TimeStampReq.load(query.read_bytes())
    assert request["nonce"].native is None and request["cert_req"].native is False
    reply = _answer(authority, tmp_path, query.read_bytes())
    assert "Verification: OK" in _verify(chain, query, reply)
    token = tsp.TimeStampResp.load(reply.read_bytes())["time_stamp_token"]["content"]
    assert token["encap_content_info"]["content"].parsed["nonce"].native is None
    assert not token["certificates"]  # no certReq: no certificate
    assert "Nonce: unspecified" in openssl("ts", "-reply", "-in", str(reply), "-text")


def test_the_offered_policy_is_granted(
    authority: CertificateAuthority, chain: ChainFiles, tmp_path: Path
) -> None:
    first = _answer(authority, tmp_path, _query(tmp_path, "-sha256").read_bytes())
    token = tsp.TimeStampResp.load(first.read_bytes())["time_stamp_token"]["content"]
    policy = token["encap_content_info"]["content"].parsed["policy"].dotted
    query = _query(tmp_path, "-sha256", "-tspolicy", policy)
    reply = _answer(authority, tmp_path, query.read_bytes())
    assert "Verification: OK" in _verify(chain, query, reply)
    assert f"Policy OID: {policy}" in openssl("ts", "-reply", "-in", str(reply), "-text")


def _sha256_query_with_algorithm(tmp_path: Path, algorithm: str) -> bytes:
    """An openssl SHA-256 request whose hashAlgorithm is changed (imprint left as it is)."""
    request = tsp.TimeStampReq.load(_query(tmp_path, "-sha256").read_bytes())
    changed = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": algorithm},
                "hashed_message": request["message_imprint"]["hashed_message"].native,
            },
            "nonce": request["nonce"].native,
        }
    )
    der: bytes = changed.dump()
    return der


@pytest.mark.parametrize(
    ("make", "fail_info"),
    [
        (lambda tmp: _query(tmp, "-sha1").read_bytes(), "bad_alg"),
        (lambda tmp: _query(tmp, "-md5").read_bytes(), "bad_alg"),
        (lambda tmp: _query(tmp, "-tspolicy", "1.2.3.4.5").read_bytes(), "unaccepted_policy"),
        (lambda tmp: _sha256_query_with_algorithm(tmp, "sha512"), "bad_data_format"),
        (lambda tmp: _sha256_query_with_algorithm(tmp, "sha384"), "bad_data_format"),
        (lambda tmp: _query(tmp, "-sha256").read_bytes()[:-3], "bad_data_format"),
        (lambda tmp: b"", "bad_data_format"),
        (lambda tmp: b"not DER", "bad_data_format"),
    ],
    ids=[
        "sha1", "md5", "unknown-policy", "sha256-as-sha512", "sha256-as-sha384", "truncated",
        "empty", "garbage",
    ],
)  # fmt: skip
def test_failures_carry_the_rfc3161_status(
    authority: CertificateAuthority, tmp_path: Path, make: object, fail_info: str
) -> None:
    assert callable(make)
    request: bytes = make(tmp_path)
    before = _tokens(authority)
    result = authority.timestamp(request)
    assert not result.granted
    # TimeStampResp ::= SEQUENCE { status PKIStatusInfo } and no token (short-form lengths)
    assert result.der[0] == 0x30 and result.der[1] == len(result.der) - 2
    status = tsp.PKIStatusInfo.load(result.der[2:])
    assert status.dump() == result.der[2:]
    assert status["status"].dump() == REJECTION
    assert status["fail_info"].dump() == FAIL_INFO_DER[fail_info]
    reply = tmp_path / "refused.tsr"
    reply.write_bytes(result.der)
    text = openssl("ts", "-reply", "-in", str(reply), "-text")
    assert "Status: Rejected." in text
    assert FAIL_INFO_TEXT[fail_info] in text.lower()
    assert _tokens(authority) == before
