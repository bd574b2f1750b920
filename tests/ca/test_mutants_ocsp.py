"""RFC 6960 / RFC 8954 cases for the survivors of ``MODULE=ca.ocsp make mutate`` (issue #23,
item 6): a serial is looked up under the CA the CertID names only, a missing or stale stored
response is re-signed and saved, several CertIDs (SHA-1 and SHA-256) get one SingleResponse
each, the request bounds (16 KiB, 10 CertIDs), critical and non-critical request extensions,
the CertStatus encodings, and the bulk refresh with its limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from sqlalchemy import select

from ca import ocsp
from ca.authority import CertificateAuthority
from ca.cache import OcspCache
from ca.config import CaConfig
from ca.directory import InMemoryDirectory
from ca.issuance import IssueRequest, SubjectSpec
from ca.models import CaCertificate, CaOcspResponse
from govtrust.db import Database
from hsm import SoftKeyStore
from tests.ca.conftest import OPERATOR, PUBLIC_URL, make_csr

MALFORMED = bytes.fromhex("30030a0101")  # OCSPResponse { malformedRequest (1) }
UNAUTHORIZED = bytes.fromhex("30030a0106")  # OCSPResponse { unauthorized (6) }
INTERNAL_ERROR = bytes.fromhex("30030a0102")  # OCSPResponse { internalError (2) }


def _issue(authority: CertificateAuthority) -> CaCertificate:
    return authority.issue(
        OPERATOR, IssueRequest("citizen", SubjectSpec(identity="c-rep"), csr=make_csr())
    ).certificate


def _cert_id(
    authority: CertificateAuthority, ca_name: str, serial: int, digest: str = "sha1"
) -> dict[str, object]:
    ca = authority.hierarchy.ca(ca_name)
    return {
        "hash_algorithm": {"algorithm": digest},
        "issuer_name_hash": ca.name_hash[digest],
        "issuer_key_hash": ca.key_hash[digest],
        "serial_number": serial,
    }


def _request(*cert_ids: dict[str, object], extensions: list[object] | None = None) -> bytes:
    tbs: dict[str, object] = {"request_list": [{"req_cert": c} for c in cert_ids]}
    if extensions is not None:
        tbs["request_extensions"] = extensions
    der: bytes = asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump()
    return der


def _singles(der: bytes) -> list[asn1_ocsp.SingleResponse]:
    response = asn1_ocsp.OCSPResponse.load(der)
    assert response["response_status"].native == "successful"
    return list(response.basic_ocsp_response["tbs_response_data"]["responses"])


def _cold(authority: CertificateAuthority) -> None:
    """A fresh in-process cache: the next SHA-1 request reads the stored responses."""
    authority.ctx.ocsp_cache = OcspCache()


def _serial_and_status(single: asn1_ocsp.SingleResponse) -> tuple[int, str]:
    return single["cert_id"]["serial_number"].native, single["cert_status"].name


def test_a_serial_of_another_ca_is_unknown(authority: CertificateAuthority) -> None:
    """The CertID names the legal-person CA; the citizen CA's certificate with that serial is
    not its certificate (RFC 6960 §2.2 unknown), on the stored and on the on-demand path."""
    row = _issue(authority)
    assert row.issuer == "citizen"
    serial = int(row.serial, 16)
    for digest in ("sha1", "sha256"):
        _cold(authority)
        der = authority.ocsp(_request(_cert_id(authority, "legal-person", serial, digest)))
        assert [_serial_and_status(s) for s in _singles(der)] == [(serial, "unknown")]
        # the response's CertID uses the request's hash algorithm (RFC 6960 §4.2.1)
        assert _singles(der)[0]["cert_id"]["hash_algorithm"]["algorithm"].native == digest
        der = authority.ocsp(_request(_cert_id(authority, "citizen", serial, digest)))
        assert [_serial_and_status(s) for s in _singles(der)] == [(serial, "good")]


def test_each_certificate_gets_its_own_stored_response(authority: CertificateAuthority) -> None:
    rows = [_issue(authority) for _ in range(3)]
    _cold(authority)
    for row in reversed(rows):
        der = authority.ocsp(_request(_cert_id(authority, "citizen", int(row.serial, 16))))
        assert [_serial_and_status(s) for s in _singles(der)] == [(int(row.serial, 16), "good")]
        with authority.ctx.db.read() as session:
            stored = session.get(CaOcspResponse, row.id)
        assert stored is not None and stored.der == der


def test_a_missing_stored_response_is_signed_and_saved(authority: CertificateAuthority) -> None:
    row = _issue(authority)
    with authority.ctx.db.transaction() as session:
        stored = session.get(CaOcspResponse, row.id)
        assert stored is not None
        session.delete(stored)
    _cold(authority)
    der = authority.ocsp(_request(_cert_id(authority, "citizen", int(row.serial, 16))))
    assert [_serial_and_status(s) for s in _singles(der)] == [(int(row.serial, 16), "good")]
    with authority.ctx.db.read() as session:
        saved = session.get(CaOcspResponse, row.id)
    assert saved is not None and saved.der == der


def test_a_stale_stored_response_is_resigned(authority: CertificateAuthority) -> None:
    """Within ``ocsp_refresh_before_hours`` (8 h) of nextUpdate the stored response is re-signed
    with a fresh nextUpdate (thisUpdate + 24 h); outside the margin it is served as stored."""
    row = _issue(authority)
    request = _request(_cert_id(authority, "citizen", int(row.serial, 16)))
    soon = datetime.now(UTC) + timedelta(hours=7, minutes=50)
    later = datetime.now(UTC) + timedelta(hours=8, minutes=10)
    with authority.ctx.db.transaction() as session:
        stored = session.get(CaOcspResponse, row.id)
        assert stored is not None
        old = stored.der
        stored.next_update = later
    _cold(authority)
    assert authority.ocsp(request) == old  # not yet due
    with authority.ctx.db.transaction() as session:
        stored = session.get(CaOcspResponse, row.id)
        assert stored is not None
        stored.next_update = soon
    _cold(authority)
    fresh = authority.ocsp(request)
    assert fresh != old
    (single,) = _singles(fresh)
    this_update, next_update = single["this_update"].native, single["next_update"].native
    assert next_update - this_update == timedelta(hours=24)
    assert abs(this_update - datetime.now(UTC)) < timedelta(minutes=1)
    with authority.ctx.db.read() as session:
        saved = session.get(CaOcspResponse, row.id)
    assert saved is not None and saved.der == fresh


def test_refresh_at_is_next_update_less_the_margin(authority: CertificateAuthority) -> None:
    moment = datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert ocsp.refresh_at(authority.ctx, moment) == (moment - timedelta(hours=8)).timestamp()
    naive = datetime(2030, 1, 1, 12)  # stored naive times are UTC
    assert ocsp.refresh_at(authority.ctx, naive) == (moment - timedelta(hours=8)).timestamp()


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
def test_several_cert_ids_get_one_response_each(
    authority: CertificateAuthority, digest: str
) -> None:
    rows = [_issue(authority) for _ in range(2)]
    authority.revoke(OPERATOR, rows[1].id, reason="keyCompromise")
    serials = [int(r.serial, 16) for r in rows]
    unknown = max(serials) + 1
    ids = [_cert_id(authority, "citizen", s, digest) for s in (*serials, unknown)]
    singles = _singles(authority.ocsp(_request(*ids)))
    assert [_serial_and_status(s) for s in singles] == [
        (serials[0], "good"),
        (serials[1], "revoked"),
        (unknown, "unknown"),
    ]
    assert singles[1]["cert_status"].chosen["revocation_reason"].native == "key_compromise"
    for single in singles:
        assert single["cert_id"]["hash_algorithm"]["algorithm"].native == digest
        assert single["next_update"].native - single["this_update"].native == timedelta(hours=24)


def test_several_cert_ids_of_unknown_cas_are_unauthorized(
    authority: CertificateAuthority,
) -> None:
    foreign = {
        "hash_algorithm": {"algorithm": "sha1"},
        "issuer_name_hash": b"\x01" * 20,
        "issuer_key_hash": b"\x02" * 20,
        "serial_number": 5,
    }
    own = _cert_id(authority, "citizen", 5)
    assert authority.ocsp(_request(foreign, foreign)) == UNAUTHORIZED
    assert authority.ocsp(_request(own, foreign)) == UNAUTHORIZED
    assert authority.ocsp(_request(foreign, own)) == UNAUTHORIZED
    mixed = [own, _cert_id(authority, "citizen", 6, "sha256")]
    assert authority.ocsp(_request(*mixed)) == UNAUTHORIZED  # one hash algorithm per request
    md5 = dict(own, hash_algorithm={"algorithm": "md5"})
    assert authority.ocsp(_request(md5, md5)) == UNAUTHORIZED
    assert authority.ocsp(_request(md5)) == UNAUTHORIZED
    assert authority.ocsp(_request(foreign)) == UNAUTHORIZED


def test_request_bounds(authority: CertificateAuthority) -> None:
    """At most 10 CertIDs and 16 KiB; none is malformed."""
    ids = [_cert_id(authority, "citizen", n) for n in range(1, 12)]
    assert len(_singles(authority.ocsp(_request(*ids[:10])))) == 10
    assert authority.ocsp(_request(*ids)) == MALFORMED
    assert authority.ocsp(_request()) == MALFORMED
    assert authority.ocsp(b"") == MALFORMED

    def padded(size: int) -> bytes:
        value = core.OctetString(b"p" * size).dump()
        return _request(ids[0], extensions=[{"extn_id": "1.2.3.9", "extn_value": value}])

    pad = 16200
    while len(padded(pad)) < ocsp.MAX_REQUEST_BYTES:
        pad += 1
    assert len(padded(pad)) == ocsp.MAX_REQUEST_BYTES == 16384
    assert [_serial_and_status(s) for s in _singles(authority.ocsp(padded(pad)))] == [
        (1, "unknown")
    ]
    assert authority.ocsp(padded(pad + 1)) == MALFORMED


def test_request_extensions(authority: CertificateAuthority) -> None:
    """RFC 6960 §4.4: an unknown non-critical extension is ignored, a critical one refused; a
    nonce (RFC 8954) after another extension is still echoed."""
    cert_id = _cert_id(authority, "citizen", 77)
    other = {"extn_id": "1.2.3.9", "critical": False, "extn_value": core.Null().dump()}
    nonce = {"extn_id": "nonce", "extn_value": b"\x42" * 16}
    der = authority.ocsp(_request(cert_id, extensions=[other, nonce]))
    data = asn1_ocsp.OCSPResponse.load(der).basic_ocsp_response["tbs_response_data"]
    (echoed,) = data["response_extensions"]
    assert echoed["extn_id"].native == "nonce"
    assert echoed["extn_value"].contents == bytes.fromhex("0410") + b"\x42" * 16
    critical = dict(other, critical=True)
    assert authority.ocsp(_request(cert_id, extensions=[critical])) == MALFORMED
    assert authority.ocsp(_request(cert_id, extensions=[nonce, critical])) == MALFORMED
    plain = authority.ocsp(_request(cert_id, extensions=[other]))
    data = asn1_ocsp.OCSPResponse.load(plain).basic_ocsp_response["tbs_response_data"]
    assert not data["response_extensions"]


def test_cert_status_encodings() -> None:
    """CertStatus ::= CHOICE { good [0] NULL, revoked [1] RevokedInfo, unknown [2] NULL }."""
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert ocsp._cert_status(ocsp.CertState("good")) == bytes.fromhex("8000")
    assert ocsp._cert_status(ocsp.CertState("unknown")) == bytes.fromhex("8200")
    time_der = b"\x18\x0f20260102030405Z"
    plain = ocsp._cert_status(ocsp.CertState("revoked", at, None))
    assert plain == b"\xa1\x11" + time_der
    unspecified = ocsp._cert_status(ocsp.CertState("revoked", at, 0))
    assert unspecified == plain  # reason 0: no reasonCode
    hold = ocsp._cert_status(ocsp.CertState("revoked", at, 6))
    assert hold == b"\xa1\x16" + time_der + bytes.fromhex("a0030a0106")


def test_state_of_rows() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    assert ocsp.state_of(None) == ocsp.CertState("unknown")
    for status, expected in (("active", "good"), ("revoked", "revoked"), ("suspended", "revoked")):
        row = CaCertificate(status=status, revoked_at=at, revocation_reason=4)
        state = ocsp.state_of(row)
        assert state.status == expected
        if expected == "revoked":
            assert (state.revoked_at, state.reason) == (at, 4)
        else:
            assert (state.revoked_at, state.reason) == (None, None)


def test_refresh_due_respects_its_limit_and_margin(authority: CertificateAuthority) -> None:
    rows = [_issue(authority) for _ in range(3)]
    with authority.ctx.db.transaction() as session:
        for row, hours in zip(rows, (1, 7, 9), strict=True):
            stored = session.get(CaOcspResponse, row.id)
            assert stored is not None
            stored.next_update = datetime.now(UTC) + timedelta(hours=hours)
    assert ocsp.refresh_due(authority.ctx, limit=1) == 1
    assert ocsp.refresh_due(authority.ctx) == 1  # the other of the two within 8 h
    assert ocsp.refresh_due(authority.ctx) == 0
    with authority.ctx.db.read() as session:
        horizon = datetime.now(UTC) + timedelta(hours=20)
        next_updates = {
            r.certificate_id: r.next_update
            for r in session.scalars(select(CaOcspResponse))
            if r.certificate_id in {row.id for row in rows}
        }
    fresh = [rows[0].id, rows[1].id]
    assert all(
        (n if n.tzinfo else n.replace(tzinfo=UTC)) > horizon
        for i, n in next_updates.items()
        if i in fresh
    )
    late = next_updates[rows[2].id]
    assert (late if late.tzinfo else late.replace(tzinfo=UTC)) < horizon


def test_cached_skips_the_database_until_a_sync_is_due(authority: CertificateAuthority) -> None:
    row = _issue(authority)
    request = _request(_cert_id(authority, "citizen", int(row.serial, 16)))
    answer = authority.ocsp(request)
    assert ocsp.cached(authority.ctx, request) == answer
    assert ocsp.cached(authority.ctx, request + b"\x00") is None


def test_a_failure_inside_is_internal_error(
    authority: CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    row = _issue(authority)
    request = _request(_cert_id(authority, "citizen", int(row.serial, 16), "sha256"))
    authority.ctx.config = type(authority.ctx.config)(
        public_base_url=authority.ctx.config.public_base_url, ocsp_validity_hours=10**9
    )
    assert authority.ocsp(request) == INTERNAL_ERROR
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [(r.name, r.getMessage()) for r in errors] == [
        ("govtrust.ca.ocsp", "OCSP request failed")
    ]
    assert errors[0].exc_info is not None  # the traceback is logged


def test_trailing_bytes_after_the_request_are_malformed(authority: CertificateAuthority) -> None:
    """DER is one encoding: a request followed by anything is not a DER OCSPRequest."""
    request = _request(_cert_id(authority, "citizen", 5))
    assert _singles(authority.ocsp(request))
    assert authority.ocsp(request + b"\x00") == MALFORMED
    assert authority.ocsp(request + request) == MALFORMED


def test_a_status_change_in_another_process_reaches_the_cache(
    authority: CertificateAuthority,
    database: Database,
    soft_keystore: SoftKeyStore,
    directory: InMemoryDirectory,
) -> None:
    """Each process caches responses; a revocation made by another process (another
    CertificateAuthority on the same database) moves the status epoch, which drops the cache."""
    row = _issue(authority)
    authority.ctx.ocsp_cache = OcspCache(check_interval=0)  # re-read the epoch on every look-up
    request = _request(_cert_id(authority, "citizen", int(row.serial, 16)))
    assert [s["cert_status"].name for s in _singles(authority.ocsp(request))] == ["good"]
    assert ocsp.cached(authority.ctx, request) is None  # a sync is due first
    other = CertificateAuthority.open(
        database, soft_keystore, CaConfig(public_base_url=PUBLIC_URL), directory
    )
    other.revoke(OPERATOR, row.id, reason="keyCompromise")
    assert [s["cert_status"].name for s in _singles(authority.ocsp(request))] == ["revoked"]


def test_serial_zero_is_unknown_not_malformed(authority: CertificateAuthority) -> None:
    """Only a negative serial is malformed; 0 (non-conforming, but met in the wild, RFC 5280
    §4.1.2.2) is answered: no certificate of ours has it."""
    for digest in ("sha1", "sha256"):
        der = authority.ocsp(_request(_cert_id(authority, "citizen", 0, digest)))
        assert [_serial_and_status(s) for s in _singles(der)] == [(0, "unknown")]


def test_a_cached_response_serves_other_requests_for_the_certificate(
    authority: CertificateAuthority,
) -> None:
    """Once read, a pre-produced response is cached per certificate: a differently encoded
    request for it (here with a non-critical extension) is answered from memory."""
    row = _issue(authority)
    _cold(authority)
    cert_id = _cert_id(authority, "citizen", int(row.serial, 16))
    first = authority.ocsp(_request(cert_id))
    with authority.ctx.db.transaction() as session:
        stored = session.get(CaOcspResponse, row.id)
        assert stored is not None
        session.delete(stored)  # not a status change: the epoch stays
    other = {"extn_id": "1.2.3.9", "critical": False, "extn_value": core.Null().dump()}
    assert authority.ocsp(_request(cert_id, extensions=[other])) == first
    assert authority.ocsp(_request(cert_id, extensions=[other])) == first  # now by its bytes
    with authority.ctx.db.read() as session:
        assert session.get(CaOcspResponse, row.id) is None  # nothing re-signed or stored
