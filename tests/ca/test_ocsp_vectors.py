"""OCSP nonces per RFC 6960 §4.4.1 and RFC 8954 (issue #23, item 2), with openssl as the
independent client: a nonce of 1..32 octets is echoed byte for byte (also when a pre-produced
response for the same certificate is cached), a nonce of 0 or more than 32 octets, a nonce not
wrapped in an OCTET STRING, and a repeated nonce extension get ``malformedRequest`` and change
nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from sqlalchemy import func, select

from ca.authority import CertificateAuthority
from ca.issuance import IssueRequest, SubjectSpec
from ca.models import CaCertificate, CaOcspResponse
from govtrust.audit import AuditRecord
from tests.ca.conftest import OPERATOR, ChainFiles, make_csr, openssl, pem, write_chain

MALFORMED = bytes.fromhex("30030a0101")  # OCSPResponse { responseStatus malformedRequest (1) }
NONCE_OID_DER = bytes.fromhex("06092b0601050507300102")  # id-pkix-ocsp-nonce 1.3.6.1.5.5.7.48.1.2
PLACEHOLDER_OID_DER = bytes.fromhex("06092b0601050507300163")  # ...48.1.99, same length


def _issue(
    authority: CertificateAuthority, tmp_path: Path
) -> tuple[CaCertificate, Path, ChainFiles]:
    issued = authority.issue(
        OPERATOR, IssueRequest("citizen", SubjectSpec(identity="c-rep"), csr=make_csr())
    )
    cert = tmp_path / "cert.pem"
    cert.write_text(pem(issued.certificate.der))
    return issued.certificate, cert, write_chain(authority, tmp_path / "chain")


def _cert_id(authority: CertificateAuthority, row: CaCertificate) -> dict[str, object]:
    ca = authority.hierarchy.ca(row.issuer)
    return {
        "hash_algorithm": {"algorithm": "sha1"},
        "issuer_name_hash": ca.name_hash["sha1"],
        "issuer_key_hash": ca.key_hash["sha1"],
        "serial_number": int(row.serial, 16),
    }


def _request(
    authority: CertificateAuthority, row: CaCertificate, *nonces: bytes, count: int = 1
) -> bytes:
    tbs: dict[str, object] = {"request_list": [{"req_cert": _cert_id(authority, row)}] * count}
    if nonces:
        tbs["request_extensions"] = [{"extn_id": "nonce", "extn_value": n} for n in nonces]
    der: bytes = asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump()
    return der


def _nonce_of(response_der: bytes) -> bytes | None:
    response = asn1_ocsp.OCSPResponse.load(response_der)
    assert response["response_status"].native == "successful"
    data = response["response_bytes"]["response"].parsed["tbs_response_data"]
    found = [e for e in data["response_extensions"] or [] if e["extn_id"].native == "nonce"]
    assert len(found) <= 1
    if not found:
        return None
    # RFC 8954 §2.1: extnValue is the DER of an OCTET STRING holding the nonce.
    raw = found[0]["extn_value"].contents
    assert raw[0] == 0x04 and raw[1] == len(raw) - 2
    return bytes(raw[2:])


def _openssl_check(tmp_path: Path, chain: ChainFiles, request: bytes, response: bytes) -> str:
    """openssl verifies the signature and, given the request, the nonce (OCSP_check_nonce:
    "Nonce Verify error" on a mismatch, "WARNING: no nonce in response" when it is dropped)."""
    (tmp_path / "q.der").write_bytes(request)
    (tmp_path / "r.der").write_bytes(response)
    return openssl(
        "ocsp", "-reqin", str(tmp_path / "q.der"), "-respin", str(tmp_path / "r.der"),
        "-issuer", str(chain.ca("citizen")), "-CAfile", str(chain.all), "-resp_text",
    )  # fmt: skip


def _counts(authority: CertificateAuthority) -> tuple[int, int, int]:
    with authority.ctx.db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(CaCertificate)) or 0,
            session.scalar(select(func.count()).select_from(CaOcspResponse)) or 0,
            session.scalar(select(func.count()).select_from(AuditRecord)) or 0,
        )


@pytest.mark.parametrize("flag", ["-nonce", "-no_nonce"])
def test_openssl_requests_get_their_nonce_back_byte_for_byte(
    authority: CertificateAuthority, tmp_path: Path, flag: str
) -> None:
    _, cert, chain = _issue(authority, tmp_path)
    request_path = tmp_path / "openssl-req.der"
    openssl(
        "ocsp", "-issuer", str(chain.ca("citizen")), "-cert", str(cert), flag,
        "-reqout", str(request_path),
    )  # fmt: skip
    request = request_path.read_bytes()
    sent = asn1_ocsp.OCSPRequest.load(request)["tbs_request"]["request_extensions"]
    if flag == "-nonce":
        assert [e["extn_id"].native for e in sent] == ["nonce"]
        expected: bytes | None = sent[0]["extn_value"].parsed.native
        assert expected is not None and len(expected) == 16  # openssl's default
    else:
        assert not sent
        expected = None
    response = authority.ocsp(request)
    assert _nonce_of(response) == expected
    out = _openssl_check(tmp_path, chain, request, response)
    assert "Response verify OK" in out and "Cert Status: good" in out
    assert "WARNING: no nonce in response" not in out and "Nonce Verify error" not in out


@pytest.mark.parametrize("length", [1, 2, 15, 16, 31, 32])
def test_nonces_of_1_to_32_octets_are_echoed(
    authority: CertificateAuthority, tmp_path: Path, length: int
) -> None:
    row, _, chain = _issue(authority, tmp_path)
    nonce = bytes(range(0xA0, 0xA0 + length))
    request = _request(authority, row, nonce)
    response = authority.ocsp(request)
    assert _nonce_of(response) == nonce
    out = _openssl_check(tmp_path, chain, request, response)
    assert "Response verify OK" in out and "Nonce Verify error" not in out


@pytest.mark.parametrize("length", [0, 33, 64, 200])
def test_nonces_of_0_or_more_than_32_octets_are_malformed(
    authority: CertificateAuthority, tmp_path: Path, length: int
) -> None:
    row, _, _ = _issue(authority, tmp_path)
    before = _counts(authority)
    assert authority.ocsp(_request(authority, row, b"\x5a" * length)) == MALFORMED
    assert _counts(authority) == before


def test_a_nonce_not_wrapped_in_an_octet_string_is_malformed(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    """Pre-RFC 8954 clients put the bare nonce bytes in extnValue; RFC 8954 §2.1 wants the DER
    of an OCTET STRING (1..32 octets) there."""
    row, _, _ = _issue(authority, tmp_path)
    bare = asn1_ocsp.OCSPRequest(
        {"tbs_request": {
            "request_list": [{"req_cert": _cert_id(authority, row)}],
            "request_extensions": [
                {"extn_id": "1.3.6.1.5.5.7.48.1.99", "extn_value": b"\x01\x02\x03\x04\x05\x06"}
            ],
        }}
    ).dump()  # fmt: skip
    assert PLACEHOLDER_OID_DER in bare
    before = _counts(authority)
    assert authority.ocsp(bare.replace(PLACEHOLDER_OID_DER, NONCE_OID_DER)) == MALFORMED
    assert _counts(authority) == before


def test_a_repeated_nonce_extension_is_malformed(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    """RFC 6960 §4.1.1 uses RFC 5280 Extensions: no extension may appear twice."""
    row, _, _ = _issue(authority, tmp_path)
    before = _counts(authority)
    assert (
        authority.ocsp(_request(authority, row, b"first-nonce-1234", b"second-nonce-567"))
        == MALFORMED
    )
    assert _counts(authority) == before


def test_nonce_is_echoed_when_a_pre_produced_response_is_cached(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    row, _, chain = _issue(authority, tmp_path)
    plain = _request(authority, row)
    cached = authority.ocsp(plain)
    assert _nonce_of(cached) is None
    assert authority.ocsp(plain) == cached  # the pre-produced response, from the cache
    first, second = b"nonce-one-16byte", b"nonce-two-16byte"
    one = authority.ocsp(_request(authority, row, first))
    two = authority.ocsp(_request(authority, row, second))
    assert _nonce_of(one) == first and _nonce_of(two) == second
    assert authority.ocsp(_request(authority, row, first)) != cached
    out = _openssl_check(tmp_path, chain, _request(authority, row, second), two)
    assert "Response verify OK" in out and "Nonce Verify error" not in out
    # and the nonce of one answer never leaks into the cached, nonce-less one
    assert _nonce_of(authority.ocsp(plain)) is None


def test_nonce_first_then_plain_request_gets_no_nonce(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    row, _, _ = _issue(authority, tmp_path)
    assert _nonce_of(authority.ocsp(_request(authority, row, b"x" * 20))) == b"x" * 20
    assert _nonce_of(authority.ocsp(_request(authority, row))) is None


def test_nonce_is_echoed_for_several_cert_ids(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    row, _, _ = _issue(authority, tmp_path)
    response = authority.ocsp(_request(authority, row, b"\x00" * 32, count=3))
    assert _nonce_of(response) == b"\x00" * 32
    data = asn1_ocsp.OCSPResponse.load(response)["response_bytes"]["response"].parsed
    assert len(data["tbs_response_data"]["responses"]) == 3


def test_cert_ids_of_two_cas_in_one_request_are_unauthorized(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    citizen, _, _ = _issue(authority, tmp_path)
    seal = authority.issue(
        OPERATOR, IssueRequest("seal", SubjectSpec(seal_id="seal-1"), csr=make_csr())
    ).certificate
    request = asn1_ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    {"req_cert": _cert_id(authority, citizen)},
                    {"req_cert": _cert_id(authority, seal)},
                ],
                "request_extensions": [{"extn_id": "nonce", "extn_value": b"n" * 16}],
            }
        }
    ).dump()
    unauthorized = bytes.fromhex("30030a0106")  # OCSPResponseStatus unauthorized (6)
    assert authority.ocsp(request) == unauthorized
