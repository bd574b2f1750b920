"""CRLs: full CRL per CA (issuing CAs and the root) and delta CRLs.

The revoked list is encoded in ONE pass straight to DER (a few microseconds per entry, ~35
bytes each): asn1crypto builds the frame (issuer name, algorithm, extensions) and the entries
are concatenated as bytes, so a 1,000,000-entry CRL is built and signed in seconds. Adding
entries one by one to ``cryptography``'s builder is quadratic; building 1M asn1crypto objects is
slow — neither is used here.

Full CRLs do not advertise the deltas (no FreshestCRL extension, RFC 5280 5.2.6): pyHanko's
validator then demands the delta, yet looks for it only through a FreshestCRL extension in the
*certificate* (and the CA certificates and every certificate already issued carry none), so an
advertising CRL makes every path indeterminate there. Deltas are still published at
``/crl/<ca>-delta.crl`` (the URL ``CaConfig.crl_url(ca, delta=True)``) for relying parties that
are configured to use them; any validator without delta support stays correct with the full CRL.

Full and delta CRLs share one CRL-number sequence per CA (RFC 5280 5.2.3), reserved from a
counter before the (possibly long) build so no lock is held meanwhile. A published CRL is
served until the CA's status epoch moves (a status change) or half its validity passed; then
the next request rebuilds it (``current``), and ``publish`` can run on a schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import crl as asn1_crl
from asn1crypto import x509
from sqlalchemy import delete, select

from ca.context import CaContext, bump_counter, issuer_epoch_name, read_counter
from ca.hierarchy import Issuer
from ca.models import CaCertificate, CaCrl
from ca.signing import SigningKey, now
from govtrust.lease import Fence

REMOVE_FROM_CRL = 8

Entry = tuple[int, datetime, int | None, datetime | None]
"""(serial, revocation date, reason code or None, invalidity date or None)."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _utc_time(moment: datetime) -> bytes:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment.year < 2050:
        return b"\x17\x0d" + moment.strftime("%y%m%d%H%M%SZ").encode("ascii")
    return b"\x18\x0f" + moment.strftime("%Y%m%d%H%M%SZ").encode("ascii")


def _reason_extension(code: int) -> bytes:
    # Extension { id-ce-cRLReasons, OCTET STRING { ENUMERATED code } }
    return _tlv(0x30, b"\x06\x03\x55\x1d\x15" + _tlv(0x04, b"\x0a\x01" + bytes((code,))))


_REASON_EXTENSIONS = {code: _reason_extension(code) for code in (1, 2, 3, 4, 5, 6, 8, 9, 10)}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def encode_entries(entries: Iterable[Entry]) -> tuple[bytes, int]:
    """DER of the revokedCertificates contents, in one pass; returns (bytes, count).

    The hot loop avoids per-entry datetime formatting: times are reduced to epoch seconds and
    their UTCTime text comes from a per-day prefix plus a per-second-of-day suffix cache.
    """
    parts: list[bytes] = []
    append = parts.append
    days: dict[int, bytes] = {}
    clock: dict[int, bytes] = {}
    reason_extensions = _REASON_EXTENSIONS
    count = 0
    for serial, revoked_at, reason, invalidity in entries:
        seconds = _epoch_seconds(revoked_at)
        day, second = divmod(seconds, 86400)
        prefix = days.get(day)
        if prefix is None:
            date = _EPOCH + timedelta(days=day)
            if date.year >= 2050:
                prefix = b""  # GeneralizedTime: handled below
            else:
                prefix = b"\x17\x0d" + date.strftime("%y%m%d").encode("ascii")
            days[day] = prefix
        if prefix:
            suffix = clock.get(second)
            if suffix is None:
                hours, rest = divmod(second, 3600)
                suffix = b"%02d%02d%02dZ" % (hours, rest // 60, rest % 60)
                clock[second] = suffix
            time_der = prefix + suffix
        else:
            time_der = _utc_time(revoked_at)
        serial_body = serial.to_bytes((serial.bit_length() + 8) >> 3, "big")
        if reason or invalidity is not None:
            extensions = reason_extensions[reason] if reason else b""
            if invalidity is not None:
                generalized = _utc_generalized(invalidity)
                extensions += _tlv(0x30, b"\x06\x03\x55\x1d\x18" + _tlv(0x04, generalized))
            extensions = b"\x30" + _length(len(extensions)) + extensions
        else:
            extensions = b""
        size = 2 + len(serial_body) + len(time_der) + len(extensions)
        if size < 0x80:
            append(
                b"\x30%c\x02%c%s%s%s" % (size, len(serial_body), serial_body, time_der, extensions)
            )
        else:
            append(
                b"\x30"
                + _length(size)
                + b"\x02%c%s%s%s" % (len(serial_body), serial_body, time_der, extensions)
            )
        count += 1
    return b"".join(parts), count


def _utc_generalized(moment: datetime) -> bytes:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return b"\x18\x0f" + moment.strftime("%Y%m%d%H%M%SZ").encode("ascii")


def build_crl(
    *,
    signer: SigningKey,
    issuer_name: x509.Name,
    issuer_key_id: bytes,
    entries: Iterable[Entry],
    crl_number: int,
    this_update: datetime,
    next_update: datetime,
    delta_base: int | None = None,
) -> tuple[bytes, int]:
    """A signed v2 CRL (DER) and its entry count."""
    revoked, count = encode_entries(entries)
    extensions: list[dict[str, object]] = [
        {
            "extn_id": "authority_key_identifier",
            "critical": False,
            "extn_value": {"key_identifier": issuer_key_id},
        },
        {"extn_id": "crl_number", "critical": False, "extn_value": crl_number},
    ]
    if delta_base is not None:
        extensions.append(
            {"extn_id": "delta_crl_indicator", "critical": True, "extn_value": delta_base}
        )
    algorithm = signer.algorithm_der
    tbs_body = b"".join(
        [
            b"\x02\x01\x01",  # version v2
            algorithm,
            issuer_name.dump(),
            _utc_time(this_update),
            _utc_time(next_update),
            _tlv(0x30, revoked) if count else b"",
            _tlv(0xA0, asn1_crl.TBSCertListExtensions(extensions).dump()),
        ]
    )
    tbs = _tlv(0x30, tbs_body)
    signature = signer.sign(tbs)
    der = _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
    return der, count


@dataclass(frozen=True)
class CrlInfo:
    """A published CRL."""

    ca: str
    der: bytes
    crl_number: int
    delta: bool
    base_crl_number: int | None
    this_update: datetime
    next_update: datetime
    entry_count: int
    # the issuer's status epoch read before the entries: every change up to it is in the CRL
    status_epoch: int


def _info(row: CaCrl) -> CrlInfo:
    return CrlInfo(
        row.issuer,
        row.der,
        row.crl_number,
        row.delta,
        row.base_crl_number,
        row.this_update,
        row.next_update,
        row.entry_count,
        row.status_epoch,
    )


def _full_entries(ctx: CaContext, ca: str, moment: datetime) -> Iterator[Entry]:
    with ctx.db.read() as session:
        result = session.execute(
            select(
                CaCertificate.serial,
                CaCertificate.revoked_at,
                CaCertificate.revocation_reason,
                CaCertificate.invalidity_date,
            )
            .where(
                CaCertificate.issuer == ca,
                CaCertificate.status.in_(("revoked", "suspended")),
                CaCertificate.not_after > moment,
            )
            .execution_options(yield_per=20_000)
        )
        for serial, revoked_at, reason, invalidity in result:
            yield int(serial, 16), revoked_at or moment, reason, invalidity


def _delta_entries(ctx: CaContext, ca: str, base: CrlInfo) -> Iterator[Entry]:
    """The status changes a holder of ``base`` lacks: those whose issuer epoch is past the
    epoch ``base`` read before its entries (a change's time is not enough: a revocation whose
    time falls before the base's thisUpdate may commit after the base read its entries)."""
    with ctx.db.read() as session:
        result = session.execute(
            select(
                CaCertificate.serial,
                CaCertificate.status,
                CaCertificate.revoked_at,
                CaCertificate.revocation_reason,
                CaCertificate.invalidity_date,
                CaCertificate.resumed_at,
            ).where(CaCertificate.issuer == ca, CaCertificate.status_epoch > base.status_epoch)
        )
        for serial, status, revoked_at, reason, invalidity, resumed_at in result:
            if status in ("revoked", "suspended"):
                yield int(serial, 16), revoked_at or base.this_update, reason, invalidity
            elif resumed_at is not None:
                yield int(serial, 16), resumed_at, REMOVE_FROM_CRL, None


def publish(
    ctx: CaContext, ca_name: str, *, delta: bool = False, fence: Fence | None = None
) -> CrlInfo:
    """Build, sign and store a new full (or delta) CRL of ``ca_name``. ``fence``: the cluster
    job's lease, checked in the transaction that stores the CRL (a stale leader's CRL is
    refused with :class:`~govtrust.lease.StaleFence`)."""
    ca: Issuer = ctx.hierarchy.ca(ca_name)
    with ctx.db.transaction() as session:
        number = bump_counter(session, f"crl:{ca_name}")
        epoch = read_counter(session, issuer_epoch_name(ca_name))
    this_update = now()
    base: CrlInfo | None = None
    if delta:
        base = delta_base(ctx, ca_name)
        entries: Iterable[Entry] = _delta_entries(ctx, ca_name, base)
        hours = ctx.config.delta_crl_validity_hours
    else:
        entries = _full_entries(ctx, ca_name, this_update)
        hours = ctx.config.crl_validity_hours
    next_update = this_update + timedelta(hours=hours)
    der, count = build_crl(
        signer=ca.key,
        issuer_name=ca.subject,
        issuer_key_id=ca.key_id,
        entries=entries,
        crl_number=number,
        this_update=this_update,
        next_update=next_update,
        delta_base=base.crl_number if base else None,
    )
    with ctx.db.transaction() as session:  # expired CRLs are of no further use
        session.execute(
            delete(CaCrl).where(CaCrl.issuer == ca_name, CaCrl.next_update < this_update)
        )
    row = CaCrl(
        issuer=ca_name,
        crl_number=number,
        delta=delta,
        base_crl_number=base.crl_number if base else None,
        this_update=this_update,
        next_update=next_update,
        entry_count=count,
        status_epoch=epoch,
        der=der,
    )
    with ctx.db.transaction() as session:
        if fence is not None:
            fence.check(session)
        session.add(row)
    return _info(row)


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _fresh(ctx: CaContext, row: CaCrl, epoch: int) -> bool:
    this_update = parse_datetime(row.this_update)
    next_update = parse_datetime(row.next_update)
    halfway = this_update + (next_update - this_update) / 2
    return row.status_epoch == epoch and now() < halfway


def _latest(ctx: CaContext, ca_name: str, delta: bool) -> tuple[CaCrl | None, int]:
    with ctx.db.read() as session:
        row = session.scalars(
            select(CaCrl)
            .where(CaCrl.issuer == ca_name, CaCrl.delta == delta)
            .order_by(CaCrl.crl_number.desc())
            .limit(1)
        ).first()
        epoch = read_counter(session, issuer_epoch_name(ca_name))
    return row, epoch


def delta_base(ctx: CaContext, ca_name: str) -> CrlInfo:
    """The base of the next delta CRL: the OLDEST full CRL still valid for longer than a delta
    lives (every client holding a full CRL issued since can apply the delta, RFC 5280 5.2.4),
    else the current full CRL."""
    horizon = now() + timedelta(hours=ctx.config.delta_crl_validity_hours)
    with ctx.db.read() as session:
        row = session.scalars(
            select(CaCrl)
            .where(CaCrl.issuer == ca_name, CaCrl.delta.is_(False), CaCrl.next_update > horizon)
            .order_by(CaCrl.crl_number)
            .limit(1)
        ).first()
    return _info(row) if row is not None else current(ctx, ca_name)


def current(
    ctx: CaContext, ca_name: str, *, delta: bool = False, fence: Fence | None = None
) -> CrlInfo:
    """The CA's current full (or delta) CRL, rebuilt when a status changed or it aged (under
    ``fence`` when the cluster job rebuilds it, see :func:`publish`)."""
    ctx.hierarchy.ca(ca_name)

    def usable(row: CaCrl | None, epoch: int) -> bool:
        return row is not None and _fresh(ctx, row, epoch)

    row, epoch = _latest(ctx, ca_name, delta)
    if row is not None and usable(row, epoch):
        return _info(row)
    with _lock(f"{ca_name}:{delta}"):
        row, epoch = _latest(ctx, ca_name, delta)
        if row is not None and usable(row, epoch):
            return _info(row)
        return publish(ctx, ca_name, delta=delta, fence=fence)


def parse_datetime(value: datetime) -> datetime:
    """Normalise a stored time to aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
