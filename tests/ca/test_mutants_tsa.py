"""RFC 3161 cases for the survivors of ``MODULE=ca.tsa make mutate`` (issue #23, item 6): the
exact rejection DER (status, statusString, failInfo bit), the request bounds, the version and
imprint checks per digest, request extensions (failInfo unacceptedExtension = bit 16), the
accuracy encoding, the token's signed attributes, and the stored token row."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms, core, tsp, x509
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from ca.authority import CertificateAuthority
from ca.der import length as _length
from ca.models import CaTsaToken
from ca.tsa import MAX_REQUEST_BYTES, TimeStampResponse, policy_oid

_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


def _rejection(fail_info_der: bytes, message: str) -> bytes:
    """TimeStampResp { PKIStatusInfo { rejection (2), { UTF8String message }, failInfo } }."""
    text = _tlv(0x0C, message.encode())
    return _tlv(0x30, _tlv(0x30, bytes.fromhex("020102") + _tlv(0x30, text) + fail_info_der))


BAD_ALG = bytes.fromhex("03020780")  # bit 0
BAD_REQUEST = bytes.fromhex("03020520")  # bit 2
BAD_DATA_FORMAT = bytes.fromhex("03020204")  # bit 5
UNACCEPTED_POLICY = bytes.fromhex("0303000001")  # bit 15
UNACCEPTED_EXTENSION = bytes.fromhex("030407000080")  # bit 16 (RFC 3161 unacceptedExtension)


def _request(digest: str = "sha256", size: int | None = None, **fields: object) -> bytes:
    value: dict[str, object] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": digest},
            "hashed_message": b"\x5a" * (_SIZES.get(digest, 32) if size is None else size),
        },
        **fields,
    }
    der: bytes = tsp.TimeStampReq(value).dump()
    return der


def _extension(padding: int) -> list[dict[str, object]]:
    value = core.OctetString(b"x" * padding).dump()
    return [{"extn_id": "1.2.3.4", "critical": False, "extn_value": value}]


def _tokens(authority: CertificateAuthority) -> int:
    with authority.ctx.db.read() as session:
        return session.scalar(select(func.count()).select_from(CaTsaToken)) or 0


def _info(der: bytes) -> tuple[cms.SignedData, tsp.TSTInfo]:
    response = tsp.TimeStampResp.load(der)
    assert response["status"]["status"].native == "granted"
    signed = response["time_stamp_token"]["content"]
    return signed, signed["encap_content_info"]["content"].parsed


def test_length_framing() -> None:
    assert _length(0) == b"\x00"
    assert _length(0x7F) == b"\x7f"
    assert _length(0x80) == b"\x81\x80"
    assert _length(0xFF) == b"\x81\xff"
    assert _length(0x100) == b"\x82\x01\x00"
    assert _length(0x10000) == b"\x83\x01\x00\x00"


def test_rejections_are_exact_der(authority: CertificateAuthority) -> None:
    policy = policy_oid(authority.ctx)
    cases = [
        (b"", BAD_DATA_FORMAT, "the request is empty or too large"),
        (b"\x30\x00", BAD_DATA_FORMAT, "the request is not a DER TimeStampReq"),
        (_request() + b"\x00", BAD_DATA_FORMAT, "the request is not a DER TimeStampReq"),
        (_request(version="v2"), BAD_REQUEST, "only TimeStampReq version 1 is supported"),
        (_request("sha1", 20), BAD_ALG, "digest sha1 is not accepted (SHA-256/384/512)"),
        (
            _request("sha256", 31),
            BAD_DATA_FORMAT,
            "the message imprint length does not fit its digest",
        ),
        (_request(req_policy="1.2.3.4"), UNACCEPTED_POLICY, f"only policy {policy} is offered"),
        (
            _request(extensions=_extension(4)),
            UNACCEPTED_EXTENSION,
            "request extensions are not supported",
        ),
    ]
    before = _tokens(authority)
    for request, fail_info, message in cases:
        result = authority.timestamp(request)
        assert result.der == _rejection(fail_info, message), message
        assert (result.granted, result.message) == (False, message)
        status = TimeStampResponse.load(result.der)["status"]
        assert status["status"].native == "rejection"
        assert status["status_string"].native == [message]
    assert _tokens(authority) == before


def test_unaccepted_extensions_name_bit_16(authority: CertificateAuthority) -> None:
    """The TSA passed ``unaccepted_extension`` (not asn1crypto's name) and the failInfo was an
    empty BIT STRING; RFC 3161 §2.4.2 unacceptedExtension is bit 16."""
    result = authority.timestamp(_request(extensions=_extension(1)))
    fail_info = TimeStampResponse.load(result.der)["status"]["fail_info"]
    assert fail_info.dump() == UNACCEPTED_EXTENSION
    assert fail_info.native == {"unaccepted_extensions"}


def test_request_size_bound(authority: CertificateAuthority) -> None:
    """A request of exactly MAX_REQUEST_BYTES is parsed (then refused for its extension); one
    byte more is refused unread."""
    assert MAX_REQUEST_BYTES == 16384
    padding = 16000
    while len(_request(extensions=_extension(padding))) < MAX_REQUEST_BYTES:
        padding += 1
    at_limit = _request(extensions=_extension(padding))
    assert len(at_limit) == MAX_REQUEST_BYTES
    assert authority.timestamp(at_limit).message == "request extensions are not supported"
    over = _request(extensions=_extension(padding + 1))
    assert len(over) == MAX_REQUEST_BYTES + 1
    assert authority.timestamp(over).message == "the request is empty or too large"


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_each_digest_needs_its_own_length(authority: CertificateAuthority, digest: str) -> None:
    size = _SIZES[digest]
    for wrong in (size - 1, size + 1):
        result = authority.timestamp(_request(digest, wrong))
        assert result.message == "the message imprint length does not fit its digest"
    result = authority.timestamp(_request(digest, size))
    assert result.granted and result.message == ""
    _, info = _info(result.der)
    assert info["message_imprint"]["hash_algorithm"]["algorithm"].native == digest
    assert info["message_imprint"]["hashed_message"].native == b"\x5a" * size


def test_the_own_policy_is_granted_and_stored(authority: CertificateAuthority) -> None:
    policy = policy_oid(authority.ctx)
    assert policy == authority.ctx.config.oid_arc + ".2.1"
    before = datetime.now(UTC) - timedelta(seconds=1)
    result = authority.timestamp(_request("sha384", req_policy=policy, nonce=7))
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert result.granted
    _, info = _info(result.der)
    assert info["version"].native == "v1"
    assert info["policy"].dotted == policy
    assert info["nonce"].native == 7
    assert info["ordering"].native is False
    assert before <= info["gen_time"].native <= after
    tsa = authority.hierarchy.tsa()
    assert info["tsa"].chosen == tsa.subject and info["tsa"].name == "directory_name"
    serial = info["serial_number"].native
    assert 0 < serial < 2**160
    with authority.ctx.db.read() as session:
        row = session.scalars(select(CaTsaToken)).one()
    assert int(row.serial, 16) == serial
    assert row.policy == policy and row.hash_algorithm == "sha384"
    assert row.message_imprint == ("5a" * 48)
    stored = row.gen_time if row.gen_time.tzinfo else row.gen_time.replace(tzinfo=UTC)
    assert abs(stored - info["gen_time"].native) < timedelta(seconds=1)


def test_token_without_nonce_has_none(authority: CertificateAuthority) -> None:
    _, info = _info(authority.timestamp(_request()).der)
    assert info["nonce"].native is None


@pytest.mark.parametrize(
    ("accuracy_ms", "expected"),
    [
        (1000, {"seconds": 1, "millis": None, "micros": None}),
        (1500, {"seconds": 1, "millis": 500, "micros": None}),
        (999, {"seconds": None, "millis": 999, "micros": None}),
        (2001, {"seconds": 2, "millis": 1, "micros": None}),
    ],
)
def test_accuracy_is_seconds_and_millis(
    authority: CertificateAuthority, accuracy_ms: int, expected: dict[str, int | None]
) -> None:
    ctx = authority.ctx
    ctx.config = dataclasses.replace(ctx.config, tsa_accuracy_ms=accuracy_ms)
    _, info = _info(authority.timestamp(_request()).der)
    assert info["accuracy"].native == expected


def test_signed_attributes_and_signature(authority: CertificateAuthority) -> None:
    """RFC 5652 §5.3/§11 and RFC 5816 ESS signing-certificate-v2 over the TSA certificate."""
    result = authority.timestamp(_request(cert_req=True))
    signed, info = _info(result.der)
    tsa = authority.hierarchy.tsa()
    digest = tsa.key.digest_name
    assert signed["version"].native == "v3"
    assert [a["algorithm"].native for a in signed["digest_algorithms"]] == [digest]
    assert signed["encap_content_info"]["content_type"].native == "tst_info"
    (signer,) = signed["signer_infos"]
    assert signer["version"].native == "v1"
    assert signer["sid"].name == "issuer_and_serial_number"
    sid = signer["sid"].chosen
    assert sid["issuer"] == tsa.certificate.issuer
    assert sid["serial_number"].native == tsa.certificate.serial_number
    assert signer["digest_algorithm"]["algorithm"].native == digest
    attrs = {a["type"].native: a["values"] for a in signer["signed_attrs"]}
    assert list(attrs) == [
        "content_type",
        "signing_time",
        "message_digest",
        "signing_certificate_v2",
    ]
    assert attrs["content_type"][0].native == "tst_info"
    assert attrs["signing_time"][0].name == "utc_time"
    assert attrs["signing_time"][0].native == info["gen_time"].native.replace(microsecond=0)
    tst_der = signed["encap_content_info"]["content"].contents
    assert attrs["message_digest"][0].native == hashlib.new(digest, tst_der).digest()
    (ess,) = attrs["signing_certificate_v2"][0]["certs"]
    assert ess["hash_algorithm"]["algorithm"].native == digest
    assert ess["cert_hash"].native == hashlib.new(digest, tsa.der).digest()
    (issuer,) = ess["issuer_serial"]["issuer"]
    assert issuer.name == "directory_name" and issuer.chosen == tsa.certificate.issuer
    assert ess["issuer_serial"]["serial_number"].native == tsa.certificate.serial_number
    assert signer["signature_algorithm"].dump() == tsa.key.signature_algorithm().dump()
    public = cx.load_der_x509_certificate(tsa.der).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    algorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[digest]
    public.verify(
        signer["signature"].native, signer["signed_attrs"].untag().dump(), ec.ECDSA(algorithm)
    )
    # certReq: the TSA's chain without the root (a SET: compared as sorted DER)
    certificates = [c.chosen for c in signed["certificates"]]
    assert all(isinstance(c, x509.Certificate) for c in certificates)
    chain = authority.ctx.hierarchy.chain(tsa.name)
    assert len(chain) == 3 and chain[0].der == tsa.der
    assert sorted(c.dump() for c in certificates) == sorted(i.der for i in chain[:-1])
