"""Per-issuer licence status lists in the IETF Token Status List style.

Each issuing department has one list: 2 bits per licence (``0`` valid, ``1`` revoked — the
draft's INVALID —, ``2`` suspended), index 0 in the least significant bits of byte 0, the bytes
ZLIB-compressed and base64url-encoded as ``{"bits": 2, "lst": ...}`` inside a JWS of type
``statuslist+jwt`` (``sub`` = the list's URI, ``iat``, ``exp``, ``ttl``) signed by the
department's key with ``x5c``. Licences carry ``status.status_list = {idx, uri}``. An offline
verifier refreshes one small download per issuer (a list of 100,000 mostly-valid licences
compresses to a few hundred bytes).
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from license.errors import LicenceVerificationFailed, Reason
from license.models import LicenceRow, LicenceStatusListRow
from license.signed_data import signer_uscc
from license.signer import LicenceSigner, b64url, b64url_decode, sign_compact, verify_compact

JWS_TYPE = "statuslist+jwt"
BITS = 2
MIN_ENTRIES = 1024  # herd privacy: a list never reveals how few licences an issuer has
MAX_BYTES = 1 << 22  # 16 Mi licences at 2 bits: the decompression limit
DEFAULT_TTL = timedelta(hours=1)


class LicenceStatus(IntEnum):
    """Status values (Token Status List: 0 VALID, 1 INVALID, 2 SUSPENDED)."""

    VALID = 0
    REVOKED = 1
    SUSPENDED = 2


_BY_NAME = {s.name.lower(): s for s in LicenceStatus}


class StatusList:
    """A fixed-size array of 2-bit statuses."""

    def __init__(self, size: int, data: bytes | None = None) -> None:
        per_byte = 8 // BITS
        nbytes = -(-max(size, 1) // per_byte)
        if data is not None and len(data) != nbytes:
            raise ValueError("status list data has the wrong length")
        self._data = bytearray(data if data is not None else nbytes)

    @property
    def size(self) -> int:
        return len(self._data) * (8 // BITS)

    def get(self, index: int) -> LicenceStatus:
        """The status at ``index`` (``IndexError`` outside the list; value 3 is ``ValueError``)."""
        if not 0 <= index < self.size:
            raise IndexError("status index outside the list")
        byte, slot = divmod(index * BITS, 8)
        return LicenceStatus((self._data[byte] >> slot) & ((1 << BITS) - 1))

    def set(self, index: int, status: LicenceStatus) -> None:
        """Set the status at ``index``."""
        if not 0 <= index < self.size:
            raise IndexError("status index outside the list")
        byte, slot = divmod(index * BITS, 8)
        mask = ((1 << BITS) - 1) << slot
        self._data[byte] = (self._data[byte] & ~mask) | (int(status) << slot)

    def to_json(self) -> dict[str, Any]:
        """``{"bits": 2, "lst": base64url(zlib(bytes))}``."""
        return {"bits": BITS, "lst": b64url(zlib.compress(bytes(self._data), 9))}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusList:
        """Parse the JSON form; raises ``ValueError`` when malformed or too large."""
        if data.get("bits") != BITS or not isinstance(data.get("lst"), str):
            raise ValueError("unsupported status list (bits must be 2)")
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(b64url_decode(data["lst"]), MAX_BYTES)
        except (zlib.error, binascii.Error) as exc:
            raise ValueError(f"status list does not decompress: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("status list too large or truncated")
        return cls(len(raw) * (8 // BITS), raw)


def sign_status_list(
    signer: LicenceSigner,
    statuses: StatusList,
    *,
    uri: str,
    now: datetime | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> str:
    """The signed status list token (compact JWS, ``typ`` ``statuslist+jwt``)."""
    issued = int((now or datetime.now(UTC)).timestamp())
    seconds = int(ttl.total_seconds())
    payload = {
        "sub": uri,
        "iat": issued,
        "exp": issued + 24 * 3600,
        "ttl": seconds,
        "status_list": statuses.to_json(),
    }
    return sign_compact(signer, payload, typ=JWS_TYPE)


@dataclass(frozen=True)
class VerifiedStatusList:
    """A status list token that verified."""

    uri: str
    issuer_code: str
    issued_at: datetime
    expires_at: datetime
    ttl: int
    statuses: StatusList

    def status(self, index: int) -> LicenceStatus:
        return self.statuses.get(index)


def verify_status_list(
    token: str,
    roots: Sequence[x509.Certificate],
    *,
    uri: str | None = None,
    issuer_code: str | None = None,
    at: datetime | None = None,
) -> VerifiedStatusList:
    """Verify a status list token: chain, signature, ``sub``, issuer and expiry."""
    moment = at or datetime.now(UTC)
    verified = verify_compact(token, roots, typ=JWS_TYPE, at=moment)
    payload = verified.payload
    try:
        sub = str(payload["sub"])
        iat = datetime.fromtimestamp(int(payload["iat"]), UTC)
        exp = datetime.fromtimestamp(int(payload["exp"]), UTC)
        ttl = int(payload.get("ttl", 0))
        statuses = StatusList.from_json(payload["status_list"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LicenceVerificationFailed(Reason.MALFORMED, f"bad status list: {exc}") from None
    if uri is not None and sub != uri:
        raise LicenceVerificationFailed(Reason.MALFORMED, "status list sub is not the asked URI")
    named = signer_uscc(verified.signer)
    if named is None or (issuer_code is not None and named != issuer_code):
        raise LicenceVerificationFailed(
            Reason.ISSUER_MISMATCH, "the status list is not signed by the issuing department"
        )
    if exp < moment:
        raise LicenceVerificationFailed(Reason.STALE_STATUS_LIST, "the status list has expired")
    return VerifiedStatusList(sub, named, iat, exp, ttl, statuses)


# --- storage ------------------------------------------------------------------------------------


def allocate_index(session: Session, issuer_code: str, count: int = 1) -> int:
    """Reserve ``count`` consecutive status indexes of an issuer; returns the first.

    Runs in the caller's write transaction; the row lock taken by the UPDATE keeps concurrent
    issuers apart.
    """
    now = datetime.now(UTC)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(LicenceStatusListRow)
        .values(issuer_code=issuer_code, next_index=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["issuer_code"])
    )
    # UPDATE ... RETURNING takes the row lock: concurrent issuers get distinct indexes.
    new_next = session.execute(
        update(LicenceStatusListRow)
        .where(LicenceStatusListRow.issuer_code == issuer_code)
        .values(next_index=LicenceStatusListRow.next_index + count, updated_at=now)
        .returning(LicenceStatusListRow.next_index)
    ).scalar_one()
    return int(new_next) - count


def build_status_list(session: Session, issuer_code: str) -> StatusList:
    """The current status list of an issuer from the licences table."""
    row = session.get(LicenceStatusListRow, issuer_code)
    size = max(MIN_ENTRIES, row.next_index if row else 0)
    statuses = StatusList(size)
    rows = session.execute(
        select(LicenceRow.status_index, LicenceRow.status).where(
            LicenceRow.issuer_code == issuer_code, LicenceRow.status != "valid"
        )
    )
    for index, status in rows:
        statuses.set(index, _BY_NAME[status])
    return statuses


def refresh_status_list(
    session: Session, signer: LicenceSigner, issuer_code: str, *, uri: str
) -> str:
    """Re-sign an issuer's list from the licences table and cache the token in its row."""
    token = sign_status_list(signer, build_status_list(session, issuer_code), uri=uri)
    now = datetime.now(UTC)
    row = session.get(LicenceStatusListRow, issuer_code)
    if row is None:
        row = LicenceStatusListRow(issuer_code=issuer_code, next_index=0, updated_at=now)
        session.add(row)
    row.token = token
    row.token_issued_at = now
    row.updated_at = now
    session.flush()
    return token
