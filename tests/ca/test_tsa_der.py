"""The token ``ca.tsa.answer`` joins from DER pieces is the DER asn1crypto would write: every
structure re-encodes to the same bytes (SET OF in order, DEFAULT values absent), the request's
MessageImprint and nonce are echoed byte for byte, and the signature verifies over the signed
attributes as a SET. Both TSAs, with and without nonce and certReq."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import cms, tsp
from cryptography import x509 as cx

from ca import der
from ca.authority import CertificateAuthority
from ca.cms_check import check_signer


def _request(nonce: bytes | None, cert_req: bool, digest: str = "sha256") -> bytes:
    oids = {"sha256": "2.16.840.1.101.3.4.2.1", "sha512": "2.16.840.1.101.3.4.2.3"}
    imprint = der.seq(
        der.seq(der.oid(oids[digest]), b"\x05\x00"),  # with NULL parameters, as openssl sends
        der.octet_string(hashlib.new(digest, b"data").digest()),
    )
    parts = [der.integer(1), imprint]
    if nonce is not None:
        parts.append(der.tlv(0x02, nonce))
    if cert_req:
        parts.append(b"\x01\x01\xff")
    return der.seq(*parts)


def _child_tags(encoded: bytes) -> list[int]:
    """The tag octets of the elements inside one DER SEQUENCE."""
    tags, index = [], 2 + (encoded[1] & 0x7F if encoded[1] & 0x80 else 0)
    while index < len(encoded):
        first = encoded[index + 1]
        size = first & 0x7F if first & 0x80 else 0
        length = int.from_bytes(encoded[index + 2 : index + 2 + size]) if size else first
        tags.append(encoded[index])
        index += 2 + size + length
    return tags


@pytest.mark.parametrize("sm2", [False, True])
@pytest.mark.parametrize(
    ("nonce", "cert_req", "digest"),
    [
        (b"\x01\x02\x03\x04\x05\x06\x07\x08", True, "sha256"),
        (b"\x00\xff\x10", False, "sha512"),  # a leading zero octet: echoed as sent
        (b"\xfe", True, "sha256"),  # negative: echoed as sent
        (None, False, "sha256"),
    ],
)
def test_tokens_are_der_and_echo_the_request(
    authority: CertificateAuthority, sm2: bool, nonce: bytes | None, cert_req: bool, digest: str
) -> None:
    request = _request(nonce, cert_req, digest)
    result = authority.timestamp(request, sm2=sm2)
    assert result.granted
    response = tsp.TimeStampResp.load(result.der)
    assert bytes(response.dump(force=True)) == result.der  # re-encoded from the values
    token = response["time_stamp_token"]
    signed = token["content"]
    tst_der = bytes(signed["encap_content_info"]["content"].contents)
    info = tsp.TSTInfo.load(tst_der)
    assert bytes(tsp.TSTInfo.load(tst_der).dump(force=True)) == tst_der
    assert 0x01 not in _child_tags(tst_der)  # ordering FALSE is the DEFAULT: absent
    sent = tsp.TimeStampReq.load(request)
    assert bytes(info["message_imprint"].dump()) == bytes(sent["message_imprint"].dump())
    if nonce is None:
        assert info["nonce"].native is None
    else:
        assert bytes(info["nonce"].dump()) == der.tlv(0x02, nonce)
    assert (signed["certificates"].native is not None) == cert_req
    signer_info = signed["signer_infos"][0]
    attributes = signer_info["signed_attrs"]
    encoded = [bytes(a.dump()) for a in attributes]
    assert encoded == sorted(encoded)  # DER SET OF order
    tsa_certificate = cx.load_der_x509_certificate(authority.hierarchy.tsa(sm2=sm2).der)
    check = check_signer(signed, signer_info, (tsa_certificate,))
    assert check.signature_valid, check


def test_the_prepared_pieces_are_built_once(authority: CertificateAuthority) -> None:
    from ca import tsa

    first, _ = tsa.prepare(authority.ctx)
    second, _ = tsa.prepare(authority.ctx)
    assert first is second
    assert cms.CMSAttribute.load(first.signing_certificate_der)["type"].native == (
        "signing_certificate_v2"
    )
