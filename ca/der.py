"""Minimal DER encoding helpers for the hot paths (certificate, OCSP, CRL and time-stamp token
assembly).

asn1crypto builds the parts that vary in shape (names, extensions) once; these helpers join
precomputed DER pieces into the structures that are built thousands of times a second, which
costs microseconds instead of the milliseconds asn1crypto's object model takes.
"""

from __future__ import annotations

import functools
from datetime import datetime

from govtrust.db import as_utc


def length(n: int) -> bytes:
    """DER length octets."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, body: bytes) -> bytes:
    """One DER element: tag, length, contents."""
    return bytes((tag,)) + length(len(body)) + body


def seq(*parts: bytes) -> bytes:
    """SEQUENCE of already-encoded parts."""
    return tlv(0x30, b"".join(parts))


def der_set(*parts: bytes) -> bytes:
    """SET (OF) of already-encoded parts, in DER order (sorted encodings)."""
    return tlv(0x31, b"".join(sorted(parts)))


@functools.lru_cache(maxsize=128)
def oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER from its dotted form (cached: the same few OIDs recur)."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray((arcs[0] * 40 + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def integer(value: int) -> bytes:
    """INTEGER (non-negative values)."""
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return tlv(0x02, body)


def octet_string(value: bytes) -> bytes:
    """OCTET STRING."""
    return tlv(0x04, value)


def bit_string(value: bytes) -> bytes:
    """BIT STRING with no unused bits."""
    return tlv(0x03, b"\x00" + value)


def generalized_time(moment: datetime) -> bytes:
    """GeneralizedTime, whole seconds, Z."""
    return b"\x18\x0f" + as_utc(moment).strftime("%Y%m%d%H%M%SZ").encode("ascii")


def x509_time(moment: datetime) -> bytes:
    """UTCTime before 2050, GeneralizedTime after (RFC 5280 4.1.2.5)."""
    moment = as_utc(moment)
    if moment.year < 2050:
        return b"\x17\x0d" + moment.strftime("%y%m%d%H%M%SZ").encode("ascii")
    return generalized_time(moment)
