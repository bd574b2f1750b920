"""RFC 6960 OCSP responder logic (transport-free: bytes in, bytes out).

* Responses are pre-produced (nonce-less, SHA-1 CertID, as openssl and browsers ask) at issuance
  and at every status change, stored in ``ca_ocsp_responses`` and served from the in-process
  cache; a stale one (within ``ocsp_refresh_before_hours`` of nextUpdate) is re-signed on
  look-up, and :func:`refresh_due` re-signs them in bulk on a schedule.
* A request with a nonce (RFC 8954) or a SHA-256 CertID is signed on demand.
* Unknown serial of one of our CAs → ``unknown``; a CertID naming a CA that is not ours →
  ``unauthorized``; anything that does not parse → ``malformedRequest``. Never an exception.
Each issuing CA's delegated responder (id-pkix-ocsp-nocheck) signs its CA's responses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import ocsp
from sqlalchemy import select

from ca import der
from ca.builder import serial_hex
from ca.context import STATUS_EPOCH, CaContext, read_counter
from ca.hierarchy import CERT_ID_DIGESTS, Issuer
from ca.models import CaCertificate, CaOcspResponse
from ca.signing import now
from govtrust.db import as_utc
from govtrust.lease import Fence
from hsm.sm2 import SM3_OID

MAX_REQUESTS = 10
MAX_REQUEST_BYTES = 16 * 1024
_MALFORMED: bytes = ocsp.OCSPResponse({"response_status": "malformed_request"}).dump()
_UNAUTHORIZED: bytes = ocsp.OCSPResponse({"response_status": "unauthorized"}).dump()
_INTERNAL_ERROR: bytes = ocsp.OCSPResponse({"response_status": "internal_error"}).dump()


@dataclass(frozen=True)
class CertState:
    """What OCSP says about one certificate."""

    status: str  # good | revoked | unknown
    revoked_at: datetime | None = None
    reason: int | None = None


def state_of(row: CaCertificate | None) -> CertState:
    """The OCSP status of a stored certificate (suspended = revoked with certificateHold)."""
    if row is None:
        return CertState("unknown")
    if row.status in ("revoked", "suspended"):
        return CertState("revoked", row.revoked_at, row.revocation_reason)
    return CertState("good")


_HASH_ALGORITHMS = {
    "sha1": der.seq(b"\x06\x05\x2b\x0e\x03\x02\x1a", b"\x05\x00"),
    "sha256": der.seq(b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01", b"\x05\x00"),
    # SM3 (1.2.156.10197.1.401), parameters absent (GM/T 0006)
    "sm3": der.seq(b"\x06\x08\x2a\x81\x1c\xcf\x55\x01\x83\x11"),
}
_DIGEST_NAMES = {SM3_OID: "sm3"}  # asn1crypto has no name for SM3
_NONCE_OID = b"\x06\x09\x2b\x06\x01\x05\x05\x07\x30\x01\x02"
_BASIC_OID = b"\x06\x09\x2b\x06\x01\x05\x05\x07\x30\x01\x01"


def _cert_status(state: CertState) -> bytes:
    if state.status == "good":
        return b"\x80\x00"  # good [0] IMPLICIT NULL
    if state.status == "unknown":
        return b"\x82\x00"  # unknown [2] IMPLICIT NULL
    assert state.revoked_at is not None
    body = der.generalized_time(state.revoked_at)
    if state.reason:  # revocationReason [0] EXPLICIT CRLReason
        body += der.tlv(0xA0, b"\x0a\x01" + bytes((state.reason,)))
    return der.tlv(0xA1, body)  # revoked [1] IMPLICIT RevokedInfo


def single_response(
    digest: str,
    name_hash: bytes,
    key_hash: bytes,
    serial: int,
    state: CertState,
    this_update: datetime,
    next_update: datetime,
) -> bytes:
    """DER SingleResponse."""
    cert_id = der.seq(
        _HASH_ALGORITHMS[digest],
        der.octet_string(name_hash),
        der.octet_string(key_hash),
        der.integer(serial),
    )
    return der.seq(
        cert_id,
        _cert_status(state),
        der.generalized_time(this_update),
        der.tlv(0xA0, der.generalized_time(next_update)),
    )


def sign_response(
    responder: Issuer, singles: list[bytes], produced: datetime, nonce: bytes | None
) -> bytes:
    """A complete DER OCSPResponse (successful, basic) signed by ``responder``."""
    parts = [
        der.tlv(0xA2, der.octet_string(responder.key_hash["sha1"])),  # responderID byKey
        der.generalized_time(produced),
        der.seq(*singles),
    ]
    if nonce is not None:
        extension = der.seq(_NONCE_OID, der.octet_string(der.octet_string(nonce)))
        parts.append(der.tlv(0xA1, der.seq(extension)))
    response_data = der.seq(*parts)
    algorithm = responder.key.algorithm_der
    signature = responder.key.sign(response_data)
    basic = der.seq(
        response_data,
        algorithm,
        der.bit_string(signature),
        der.tlv(0xA0, der.seq(responder.der)),
    )
    return der.seq(b"\x0a\x01\x00", der.tlv(0xA0, der.seq(_BASIC_OID, der.octet_string(basic))))


def produce(
    ctx: CaContext,
    ca: Issuer,
    serial: int,
    state: CertState,
    *,
    digest: str = "sha1",
    nonce: bytes | None = None,
    this_update: datetime | None = None,
) -> tuple[bytes, datetime]:
    """Build and sign a response for one certificate; returns (DER, nextUpdate)."""
    responder = ctx.hierarchy.responder(ca.name)
    produced = now()
    this_update = this_update or produced
    next_update = this_update + timedelta(hours=ctx.config.ocsp_validity_hours)
    single = single_response(
        digest, ca.name_hash[digest], ca.key_hash[digest], serial, state, this_update, next_update
    )
    return sign_response(responder, [single], produced, nonce), next_update


def preproduce(ctx: CaContext, row: CaCertificate) -> CaOcspResponse:
    """The pre-produced response row for a certificate in its current state."""
    ca = ctx.hierarchy.ca(row.issuer)
    der, next_update = produce(ctx, ca, int(row.serial, 16), state_of(row))
    return CaOcspResponse(
        certificate_id=row.id, der=der, this_update=now(), next_update=next_update
    )


def refresh_at(ctx: CaContext, next_update: datetime) -> float:
    """When a response valid until ``next_update`` is due to be re-signed (epoch seconds)."""
    margin = timedelta(hours=ctx.config.ocsp_refresh_before_hours)
    return (as_utc(next_update) - margin).timestamp()


_refresh_at = refresh_at


def _epoch(ctx: CaContext) -> int:
    with ctx.db.read() as session:
        return read_counter(session, STATUS_EPOCH)


def cached(ctx: CaContext, request: bytes) -> bytes | None:
    """The cached response to exactly these bytes without touching the database, or None
    (then call :func:`respond` off the event loop)."""
    if ctx.ocsp_cache.sync_due():
        return None
    return ctx.ocsp_cache.get_request(request)


def respond(ctx: CaContext, request: bytes) -> bytes:
    """Answer one DER OCSP request with a DER OCSP response (never raises)."""
    try:
        return _respond(ctx, request)
    except Exception:
        import logging

        logging.getLogger("govtrust.ca.ocsp").exception("OCSP request failed")
        return _INTERNAL_ERROR


def _respond(ctx: CaContext, request: bytes) -> bytes:
    cache = ctx.ocsp_cache
    cache.sync(lambda: _epoch(ctx))
    hit = cache.get_request(request)
    if hit is not None:
        return hit
    if not request or len(request) > MAX_REQUEST_BYTES:
        return _MALFORMED
    try:
        parsed = ocsp.OCSPRequest.load(request, strict=True)
        tbs = parsed["tbs_request"]
        items = []
        for item in tbs["request_list"]:
            cert_id = item["req_cert"]
            items.append(
                (
                    _DIGEST_NAMES.get(
                        cert_id["hash_algorithm"]["algorithm"].dotted,
                        cert_id["hash_algorithm"]["algorithm"].native,
                    ),
                    cert_id["issuer_name_hash"].native,
                    cert_id["issuer_key_hash"].native,
                    cert_id["serial_number"].native,
                )
            )
        nonce: bytes | None = None
        extensions = tbs["request_extensions"] or []
        if len({e["extn_id"].dotted for e in extensions}) != len(extensions):
            return _MALFORMED  # RFC 5280 §4.2: an extension appears at most once
        for extension in extensions:
            if extension["extn_id"].native == "nonce":
                nonce = extension["extn_value"].parsed.native
                if not isinstance(nonce, bytes) or not 1 <= len(nonce) <= 32:
                    return _MALFORMED  # RFC 8954: 1..32 octets
            elif extension["critical"].native:
                return _MALFORMED
    except (ValueError, TypeError, KeyError, AttributeError):
        return _MALFORMED
    if not items or len(items) > MAX_REQUESTS:
        return _MALFORMED
    if any(item[3] < 0 for item in items):
        return _MALFORMED  # RFC 5280 4.1.2.2: a serial number is a positive integer
    if len(items) > 1:
        return _respond_many(ctx, items, nonce)
    digest, name_hash, key_hash, serial = items[0]
    if digest not in CERT_ID_DIGESTS:
        return _UNAUTHORIZED
    ca = ctx.hierarchy.by_cert_id(digest, name_hash, key_hash)
    if ca is None:
        return _UNAUTHORIZED
    if nonce is None and digest == "sha1":
        cached = cache.get_serial(ca.name, serial)
        if cached is not None:
            cache.put(ca.name, serial, cached[0], cached[1], request)
            return cached[0]
        stored = _stored(ctx, ca, serial)
        if stored is not None:
            der, refresh_at = stored
            cache.put(ca.name, serial, der, refresh_at, request)
            return der
    state = _lookup_state(ctx, ca, serial)
    der, _ = produce(ctx, ca, serial, state, digest=digest, nonce=nonce)
    return der


def _lookup_state(ctx: CaContext, ca: Issuer, serial: int) -> CertState:
    with ctx.db.read() as session:
        row = session.scalars(
            select(CaCertificate).where(
                CaCertificate.issuer == ca.name, CaCertificate.serial == serial_hex(serial)
            )
        ).first()
        return state_of(row)


def _stored(ctx: CaContext, ca: Issuer, serial: int) -> tuple[bytes, float] | None:
    """The stored pre-produced response (re-signed and saved when due), or None if unknown."""
    with ctx.db.read() as session:
        found = session.execute(
            select(CaCertificate, CaOcspResponse)
            .outerjoin(CaOcspResponse, CaOcspResponse.certificate_id == CaCertificate.id)
            .where(CaCertificate.issuer == ca.name, CaCertificate.serial == serial_hex(serial))
        ).first()
    if found is None:
        return None
    row, response = found
    if response is not None and _refresh_at(ctx, response.next_update) > time.time():
        return response.der, _refresh_at(ctx, response.next_update)
    fresh = preproduce(ctx, row)
    with ctx.db.transaction() as session:
        session.merge(fresh)
    return fresh.der, _refresh_at(ctx, fresh.next_update)


def _respond_many(
    ctx: CaContext, items: list[tuple[str, bytes, bytes, int]], nonce: bytes | None
) -> bytes:
    """Several CertIDs in one request: one response per CertID, signed on demand."""
    found = [ctx.hierarchy.by_cert_id(d, n, k) for d, n, k, _ in items if d in CERT_ID_DIGESTS]
    names = {ca.name if ca is not None else None for ca in found}  # Issuer is not hashable
    if (
        len(found) != len(items)
        or None in names
        or len(names) != 1
        or len({d for d, *_ in items}) != 1
    ):
        return _UNAUTHORIZED  # one responder answers for one CA
    ca = found[0]
    assert ca is not None
    responder = ctx.hierarchy.responder(ca.name)
    produced = now()
    next_update = produced + timedelta(hours=ctx.config.ocsp_validity_hours)
    singles = [
        single_response(
            digest,
            name_hash,
            key_hash,
            serial,
            _lookup_state(ctx, ca, serial),
            produced,
            next_update,
        )
        for digest, name_hash, key_hash, serial in items
    ]
    return sign_response(responder, singles, produced, nonce)


def refresh_due(ctx: CaContext, *, limit: int = 10_000, fence: Fence | None = None) -> int:
    """Re-sign stored responses that are within the refresh margin of nextUpdate; returns how
    many (run on a schedule so that cached responses never go stale). ``fence``: the cluster
    job's lease, checked in the transaction that stores them (a stale leader stores nothing)."""
    horizon = now() + timedelta(hours=ctx.config.ocsp_refresh_before_hours)
    with ctx.db.read() as session:
        rows = list(
            session.scalars(
                select(CaCertificate)
                .join(CaOcspResponse, CaOcspResponse.certificate_id == CaCertificate.id)
                .where(CaOcspResponse.next_update < horizon)
                .limit(limit)
            )
        )
    fresh = [preproduce(ctx, row) for row in rows]
    if fresh:
        with ctx.db.transaction() as session:
            if fence is not None:
                fence.check(session)
            for item in fresh:
                session.merge(item)
    return len(fresh)
