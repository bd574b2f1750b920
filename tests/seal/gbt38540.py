"""A test-only GB/T 38540-2020 ("v4") reader written from the standard's ASN.1, independent of
``seal.structures`` (and of asn1crypto): a plain DER TLV walker and the two top-level types.

    SESeal        ::= SEQUENCE { eSealInfo SES_SealInfo, cert OCTET STRING, signAlgID OID,
                                 signedValue BIT STRING }
    SES_SealInfo  ::= SEQUENCE { header SES_Header, esID IA5String, property SES_ESPropertyInfo,
                                 picture SES_ESPictrueInfo, extDatas ExtensionDatas OPTIONAL }
    SES_Header    ::= SEQUENCE { ID IA5String, version INTEGER, Vid IA5String }
    SES_ESPropertyInfo ::= SEQUENCE { type INTEGER, name UTF8String, certListType INTEGER,
                                 certList SES_CertList, createDate GeneralizedTime,
                                 validStart GeneralizedTime, validEnd GeneralizedTime }
    TBS_Sign      ::= SEQUENCE { version INTEGER, eseal SESeal, timeInfo GeneralizedTime,
                                 dataHash BIT STRING, propertyInfo IA5String,
                                 extDatas [0] EXPLICIT ExtensionDatas OPTIONAL }
    SES_Signature ::= SEQUENCE { toSign TBS_Sign, cert OCTET STRING, signatureAlgID OID,
                                 signature BIT STRING, timeStamp [0] EXPLICIT BIT STRING OPTIONAL }

Each parsed value keeps the exact DER of the part a signature covers (SES_SealInfo, TBS_Sign).
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE, INTEGER, BIT_STRING, OCTET_STRING, OID = 0x30, 0x02, 0x03, 0x04, 0x06
UTF8, IA5, GENERALIZED_TIME, CONTEXT_0 = 0x0C, 0x16, 0x18, 0xA0


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes
    der: bytes  # the whole element


def read(der: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """One DER element at ``offset`` and the offset after it (definite lengths only)."""
    tag = der[offset]
    length = der[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        assert 1 <= count <= 4, "DER length of 1-4 bytes"
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    assert end <= len(der), "truncated element"
    return Tlv(tag, der[start:end], der[offset:end]), end


def children(tlv: Tlv, tag: int = SEQUENCE) -> list[Tlv]:
    """The elements inside a constructed element of ``tag``."""
    assert tlv.tag == tag, f"expected tag 0x{tag:02x}, got 0x{tlv.tag:02x}"
    out, offset = [], 0
    while offset < len(tlv.value):
        item, offset = read(tlv.value, offset)
        out.append(item)
    return out


def oid(tlv: Tlv) -> str:
    """Dotted form of an OBJECT IDENTIFIER."""
    assert tlv.tag == OID
    first = tlv.value[0]
    parts, value = [first // 40, first % 40], 0
    for byte in tlv.value[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def bits(tlv: Tlv) -> bytes:
    """The octets of a BIT STRING with no unused bits."""
    assert tlv.tag == BIT_STRING and tlv.value[0] == 0, "whole-octet BIT STRING"
    return tlv.value[1:]


def integer(tlv: Tlv) -> int:
    assert tlv.tag == INTEGER
    return int.from_bytes(tlv.value, "big", signed=True)


def text(tlv: Tlv, tag: int) -> str:
    assert tlv.tag == tag
    return tlv.value.decode("utf-8" if tag == UTF8 else "ascii")


@dataclass(frozen=True)
class Seal:
    header: tuple[str, int, str]
    es_id: str
    kind: int
    name: str
    cert_list_type: int
    certs: tuple[bytes, ...]
    picture_type: str
    seal_info_der: bytes  # what the maker signed
    maker_cert: bytes
    sign_alg: str
    signed_value: bytes
    der: bytes


@dataclass(frozen=True)
class Signature:
    version: int
    seal: Seal
    time_info: str
    data_hash: bytes
    property_info: str
    tbs_der: bytes  # what the signer signed
    cert: bytes
    sign_alg: str
    signature: bytes
    time_stamp: bytes | None


def parse_seal_tlv(tlv: Tlv) -> Seal:
    info, cert, alg, value = children(tlv)
    header, es_id, prop, picture, *_ext = children(info)
    h_id, h_version, h_vid = children(header)
    p_type, p_name, p_list_type, p_list, *_dates = children(prop)
    certs = tuple(c.value for c in children(p_list) if c.tag == OCTET_STRING)
    assert cert.tag == OCTET_STRING
    return Seal(
        (text(h_id, IA5), integer(h_version), text(h_vid, IA5)),
        text(es_id, IA5),
        integer(p_type),
        text(p_name, UTF8),
        integer(p_list_type),
        certs,
        text(children(picture)[0], IA5),
        info.der,
        cert.value,
        oid(alg),
        bits(value),
        tlv.der,
    )


def parse_seal(der: bytes) -> Seal:
    """An SESeal (v4)."""
    tlv, end = read(der)
    assert end == len(der), "trailing bytes"
    return parse_seal_tlv(tlv)


def parse_signature(der: bytes) -> Signature:
    """An SES_Signature (v4)."""
    tlv, end = read(der)
    assert end == len(der), "trailing bytes"
    to_sign, cert, alg, value, *rest = children(tlv)
    version, eseal, time_info, data_hash, property_info, *_ext = children(to_sign)
    assert time_info.tag == GENERALIZED_TIME and cert.tag == OCTET_STRING
    stamp = None
    if rest:
        assert rest[0].tag == CONTEXT_0
        inner, _ = read(rest[0].value)
        stamp = bits(inner)
    return Signature(
        integer(version),
        parse_seal_tlv(eseal),
        time_info.value.decode("ascii"),
        bits(data_hash),
        text(property_info, IA5),
        to_sign.der,
        cert.value,
        oid(alg),
        bits(value),
        stamp,
    )
