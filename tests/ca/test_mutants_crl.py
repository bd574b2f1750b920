"""RFC 5280 §5 cases for the survivors of ``MODULE=ca.crl make mutate`` (issue #23, item 6):
the one-pass entry encoder against asn1crypto's own encoding (UTCTime up to 2049, then
GeneralizedTime; every reason code; invalidity dates; serials at the sign-bit boundaries; long
lengths), the signed CRL's fields and signature, which certificates a full and a delta CRL
list, expired CRLs being pruned, and when a published CRL is reused or rebuilt."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import x509
from cryptography import x509 as cx
from sqlalchemy import delete, select, update

from ca import crl
from ca.authority import CertificateAuthority
from ca.issuance import IssueRequest, SubjectSpec
from ca.models import CaCertificate, CaCrl
from tests.ca.conftest import OPERATOR, USCC, make_csr
from tests.unchanged import unchanged

BEIJING = timezone(timedelta(hours=8))


def _expected(entry: crl.Entry) -> bytes:
    """asn1crypto's DER of one revokedCertificates entry (times in UTC, seconds)."""
    serial, revoked_at, reason, invalidity = entry
    at = revoked_at.astimezone(UTC) if revoked_at.tzinfo else revoked_at.replace(tzinfo=UTC)
    kind = "utc_time" if at.year < 2050 else "general_time"
    value: dict[str, object] = {
        "user_certificate": serial,
        "revocation_date": x509.Time(name=kind, value=at),
    }
    extensions: list[dict[str, object]] = []
    if reason:
        extensions.append({"extn_id": "crl_reason", "extn_value": reason})
    if invalidity is not None:
        moment = invalidity.astimezone(UTC) if invalidity.tzinfo else invalidity.replace(tzinfo=UTC)
        extensions.append({"extn_id": "invalidity_date", "extn_value": moment})
    if extensions:
        value["crl_entry_extensions"] = extensions
    der: bytes = asn1_crl.RevokedCertificate(value).dump(force=True)
    return der


def _entries() -> list[crl.Entry]:
    base = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    entries: list[crl.Entry] = [
        (1, base, None, None),
        (127, base, 1, None),  # the same second again (the per-second cache)
        (128, base + timedelta(days=1), 2, None),  # the same second of another day
        (255, base + timedelta(seconds=1), 3, base - timedelta(days=3)),
        (256, base.astimezone(BEIJING), 4, base.astimezone(BEIJING)),
        (2**63, base.replace(tzinfo=None), 5, base.replace(tzinfo=None)),
        (2**159 + 1, datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), 6, None),
        (3, datetime(2050, 1, 1, tzinfo=UTC), 8, None),
        (4, datetime(2050, 1, 1, tzinfo=UTC), 9, None),  # the same GeneralizedTime day
        (5, datetime(2051, 7, 8, 9, 10, 11, tzinfo=BEIJING), 10, None),
        (6, datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), 0, None),  # 0: no reasonCode
        (7, datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), None, None),
        (8, datetime(1999, 12, 31, 13, 14, 15, tzinfo=UTC), None, None),
        (2**700, base, 1, base),  # a long entry: the length in long form
        (2**880, base, None, None),  # 111-octet serial: an entry of exactly 0x80 octets
        (9, datetime(2026, 3, 4, 10, 1, 0, tzinfo=UTC), None, base),  # no reason, invalidity
    ]
    return entries


def test_entries_encode_as_asn1crypto_does() -> None:
    entries = _entries()
    der, count = crl.encode_entries(iter(entries))
    assert count == len(entries)
    assert der == b"".join(_expected(e) for e in entries)
    assert crl.encode_entries([entries[-2]])[0][:3] == b"\x30\x81\x80"  # long form at 0x80
    for entry in entries:  # each on its own, without the caches filled by the others
        assert crl.encode_entries([entry]) == (_expected(entry), 1)


def test_reason_extensions_are_literal_der() -> None:
    """Extension { id-ce-cRLReasons 2.5.29.21, OCTET STRING { ENUMERATED code } }."""
    for code in (1, 2, 3, 4, 5, 6, 8, 9, 10):
        literal = bytes.fromhex("300a0603551d1504030a01") + bytes((code,))
        assert crl._REASON_EXTENSIONS[code] == literal
        assert crl._reason_extension(code) == literal
    assert sorted(crl._REASON_EXTENSIONS) == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert crl.REMOVE_FROM_CRL == 8


def test_lengths_and_times() -> None:
    assert crl._length(0x7F) == b"\x7f"
    assert crl._length(0x80) == b"\x81\x80"
    assert crl._length(0x1234) == b"\x82\x12\x34"
    assert crl._tlv(0x04, b"ab") == b"\x04\x02ab"
    assert crl._utc_time(datetime(2049, 12, 31, 23, 59, 59)) == b"\x17\x0d491231235959Z"
    assert crl._utc_time(datetime(2050, 1, 1, 7, 59, 59, tzinfo=BEIJING)) == (
        b"\x17\x0d491231235959Z"
    )
    assert crl._utc_time(datetime(2050, 1, 1, tzinfo=UTC)) == b"\x18\x0f20500101000000Z"
    assert crl._utc_generalized(datetime(2026, 1, 2, 11, 4, 5, tzinfo=BEIJING)) == (
        b"\x18\x0f20260102030405Z"
    )
    assert crl._utc_generalized(datetime(2026, 1, 2, 3, 4, 5)) == b"\x18\x0f20260102030405Z"
    assert crl._epoch_seconds(datetime(1970, 1, 2)) == 86400
    assert crl._epoch_seconds(datetime(1970, 1, 2, 8, tzinfo=BEIJING)) == 86400
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert crl.parse_datetime(naive) == naive.replace(tzinfo=UTC)
    aware = datetime(2026, 1, 2, 11, 4, 5, tzinfo=BEIJING)
    assert crl.parse_datetime(aware) == aware and crl.parse_datetime(aware).tzinfo == UTC


@pytest.mark.parametrize("delta_base", [None, 3])
def test_build_crl_fields_and_signature(
    authority: CertificateAuthority, delta_base: int | None
) -> None:
    ca = authority.hierarchy.ca("citizen")
    this_update = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    entries = _entries()[:3]
    der, count = crl.build_crl(
        signer=ca.key,
        issuer_name=ca.subject,
        issuer_key_id=ca.key_id,
        entries=entries,
        crl_number=300,
        this_update=this_update,
        next_update=this_update + timedelta(hours=24),
        delta_base=delta_base,
    )
    assert count == 3
    parsed = asn1_crl.CertificateList.load(der)
    assert parsed.dump(force=True) == der  # DER all the way through
    tbs = parsed["tbs_cert_list"]
    assert tbs["version"].native == "v2"
    assert tbs["signature"].dump() == parsed["signature_algorithm"].dump() == ca.key.algorithm_der
    assert tbs["issuer"] == ca.subject
    assert tbs["this_update"].native == this_update
    assert tbs["next_update"].native == this_update + timedelta(hours=24)
    assert [e.dump() for e in tbs["revoked_certificates"]] == [_expected(e) for e in entries]
    extensions = {e["extn_id"].native: e for e in tbs["crl_extensions"]}
    expected_ids = ["authority_key_identifier", "crl_number"]
    if delta_base is not None:
        expected_ids.append("delta_crl_indicator")
    assert [e["extn_id"].native for e in tbs["crl_extensions"]] == expected_ids
    aki = extensions["authority_key_identifier"]
    assert aki["critical"].native is False
    assert aki["extn_value"].parsed["key_identifier"].native == ca.key_id
    assert extensions["crl_number"]["critical"].native is False
    assert extensions["crl_number"]["extn_value"].parsed.native == 300
    if delta_base is not None:
        indicator = extensions["delta_crl_indicator"]
        assert indicator["critical"].native is True
        assert indicator["extn_value"].parsed.native == delta_base
    issuer = cx.load_der_x509_certificate(ca.der)
    assert cx.load_der_x509_crl(der).is_signature_valid(issuer.public_key())  # type: ignore[arg-type]


def test_an_empty_crl_has_no_revoked_certificates(authority: CertificateAuthority) -> None:
    ca = authority.hierarchy.ca("citizen")
    moment = datetime(2026, 5, 6, tzinfo=UTC)
    der, count = crl.build_crl(
        signer=ca.key,
        issuer_name=ca.subject,
        issuer_key_id=ca.key_id,
        entries=[],
        crl_number=1,
        this_update=moment,
        next_update=moment + timedelta(hours=1),
    )
    assert count == 0
    assert len(asn1_crl.CertificateList.load(der)["tbs_cert_list"]["revoked_certificates"]) == 0
    # revokedCertificates is absent (RFC 5280 5.1.2.6), not an empty SEQUENCE: the
    # [0] crlExtensions follow nextUpdate directly
    next_update = crl._utc_time(moment + timedelta(hours=1))
    assert der[der.index(next_update) + len(next_update)] == 0xA0


def _issue(authority: CertificateAuthority) -> CaCertificate:
    return authority.issue(
        OPERATOR, IssueRequest("citizen", SubjectSpec(identity="c-rep"), csr=make_csr())
    ).certificate


def _listed(info: crl.CrlInfo) -> dict[int, tuple[str | None, datetime, datetime | None]]:
    parsed = asn1_crl.CertificateList.load(info.der)
    out = {}
    for entry in parsed["tbs_cert_list"]["revoked_certificates"]:
        reason = entry.crl_reason_value.native if entry.crl_reason_value else None
        invalidity = entry.invalidity_date_value
        out[entry["user_certificate"].native] = (
            reason,
            entry["revocation_date"].native,
            invalidity.native if invalidity else None,
        )
    return out


def test_full_crl_lists_revoked_and_held_unexpired_certificates(
    authority: CertificateAuthority,
) -> None:
    revoked, held, _active, expired = (_issue(authority) for _ in range(4))
    other = authority.issue(
        OPERATOR, IssueRequest("legal-person", SubjectSpec(identity=USCC), csr=make_csr())
    ).certificate
    hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    authority.revoke(OPERATOR, revoked.id, reason="superseded", invalidity_date=hour_ago)
    authority.suspend(OPERATOR, held.id)
    authority.revoke(OPERATOR, expired.id, reason="keyCompromise")
    authority.revoke(OPERATOR, other.id, reason="keyCompromise")  # another CA's certificate
    two_hours_ago = hour_ago - timedelta(hours=1)
    with authority.ctx.db.transaction() as session:
        session.execute(
            update(CaCertificate)
            .where(CaCertificate.id == revoked.id)
            .values(revoked_at=two_hours_ago)
        )
        session.execute(
            update(CaCertificate)
            .where(CaCertificate.id == expired.id)
            .values(not_after=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.execute(
            update(CaCertificate).where(CaCertificate.id == held.id).values(revoked_at=None)
        )
    before = datetime.now(UTC).replace(microsecond=0)
    info = crl.publish(authority.ctx, "citizen")
    after = datetime.now(UTC) + timedelta(seconds=1)
    listed = _listed(info)
    assert set(listed) == {int(revoked.serial, 16), int(held.serial, 16)}
    assert listed[int(revoked.serial, 16)] == ("superseded", two_hours_ago, hour_ago)
    reason, revoked_at, invalidity = listed[int(held.serial, 16)]
    assert reason == "certificate_hold" and invalidity is None
    assert before <= revoked_at <= after  # no revocation time stored: the CRL's own time
    assert info.entry_count == 2 and not info.delta and info.base_crl_number is None
    assert info.ca == "citizen"
    assert info.next_update - info.this_update == timedelta(hours=24)


def test_publish_numbers_stores_and_prunes(authority: CertificateAuthority) -> None:
    first = crl.publish(authority.ctx, "citizen")
    other = crl.publish(authority.ctx, "legal-person")
    second = crl.publish(authority.ctx, "citizen")
    assert second.crl_number == first.crl_number + 1
    assert (second.delta, second.base_crl_number) == (False, None)
    with authority.ctx.db.read() as session:
        row = session.scalars(
            select(CaCrl).where(CaCrl.issuer == "citizen", CaCrl.crl_number == second.crl_number)
        ).one()
    assert row.der == second.der and row.entry_count == 0 and row.delta is False
    assert crl.parse_datetime(row.this_update) == second.this_update
    assert crl.parse_datetime(row.next_update) == second.next_update
    # a CRL whose nextUpdate passed is deleted at the next publication of ITS CA only
    past = datetime.now(UTC) - timedelta(minutes=1)
    with authority.ctx.db.transaction() as session:
        session.execute(
            update(CaCrl)
            .where(CaCrl.crl_number.in_((first.crl_number, other.crl_number)))
            .values(next_update=past)
        )
    third = crl.publish(authority.ctx, "citizen")
    with authority.ctx.db.read() as session:
        numbers = {(r.issuer, r.crl_number) for r in session.scalars(select(CaCrl))}
    assert ("citizen", first.crl_number) not in numbers
    assert ("citizen", second.crl_number) in numbers
    assert ("citizen", third.crl_number) in numbers
    assert ("legal-person", other.crl_number) in numbers


def test_delta_lists_changes_since_its_base(authority: CertificateAuthority) -> None:
    old, revoked, resumed, held = (_issue(authority) for _ in range(4))
    other = authority.issue(
        OPERATOR, IssueRequest("legal-person", SubjectSpec(identity=USCC), csr=make_csr())
    ).certificate
    assert other.issuer != "citizen"
    authority.revoke(OPERATOR, old.id, reason="keyCompromise")
    with authority.ctx.db.transaction() as session:  # CRL times are whole seconds
        session.execute(
            update(CaCertificate)
            .where(CaCertificate.id == old.id)
            .values(status_changed_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    base = crl.publish(authority.ctx, "citizen")
    day_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    authority.revoke(OPERATOR, revoked.id, reason="cessationOfOperation", invalidity_date=day_ago)
    authority.suspend(OPERATOR, resumed.id)
    authority.resume(OPERATOR, resumed.id)
    authority.suspend(OPERATOR, held.id)
    authority.revoke(OPERATOR, other.id, reason="keyCompromise")  # another CA's change
    with authority.ctx.db.transaction() as session:  # revocation times unlike the base's time
        for row_id, minutes in ((revoked.id, 30), (held.id, 20)):
            session.execute(
                update(CaCertificate)
                .where(CaCertificate.id == row_id)
                .values(revoked_at=datetime.now(UTC) - timedelta(minutes=minutes))
            )
    delta = crl.publish(authority.ctx, "citizen", delta=True)
    assert delta.delta and delta.base_crl_number == base.crl_number
    assert delta.crl_number == base.crl_number + 1
    assert delta.next_update - delta.this_update == timedelta(hours=4)
    listed = _listed(delta)
    assert set(listed) == {int(r.serial, 16) for r in (revoked, resumed, held)}
    with authority.ctx.db.read() as session:
        rows = {r.id: r for r in session.scalars(select(CaCertificate))}
    revoked_at = crl.parse_datetime(rows[revoked.id].revoked_at).replace(microsecond=0)  # type: ignore[arg-type]
    assert listed[int(revoked.serial, 16)] == ("cessation_of_operation", revoked_at, day_ago)
    held_at = crl.parse_datetime(rows[held.id].revoked_at).replace(microsecond=0)  # type: ignore[arg-type]
    assert listed[int(held.serial, 16)] == ("certificate_hold", held_at, None)
    resumed_at = crl.parse_datetime(rows[resumed.id].resumed_at).replace(microsecond=0)  # type: ignore[arg-type]
    assert listed[int(resumed.serial, 16)] == ("remove_from_crl", resumed_at, None)
    parsed = asn1_crl.CertificateList.load(delta.der)
    assert parsed.delta_crl_indicator_value.native == base.crl_number


def test_locks_are_one_per_key() -> None:
    key = f"test-mutants:{uuid.uuid4()}"  # new keys (the lock table lives for the process)
    first = crl._lock(key)
    assert crl._lock(key) is first
    other = crl._lock(key + ":b")
    assert other is not first
    with first:
        assert first.locked() and not other.locked()


def test_current_is_the_latest_of_its_own_ca(authority: CertificateAuthority) -> None:
    mine = crl.current(authority.ctx, "citizen")
    for _ in range(3):  # the legal-person CA's CRL numbers pass the citizen CA's
        crl.publish(authority.ctx, "legal-person")
    again = crl.current(authority.ctx, "citizen")
    assert (again.ca, again.crl_number, again.der) == ("citizen", mine.crl_number, mine.der)


def test_delta_base_is_the_oldest_full_crl_outliving_a_delta(
    authority: CertificateAuthority,
) -> None:
    first = crl.publish(authority.ctx, "citizen")
    second = crl.publish(authority.ctx, "citizen")
    assert crl.delta_base(authority.ctx, "citizen").crl_number == first.crl_number
    # the first ends within a delta's lifetime (4 h): the second becomes the base
    with authority.ctx.db.transaction() as session:
        session.execute(
            update(CaCrl)
            .where(CaCrl.issuer == "citizen", CaCrl.crl_number == first.crl_number)
            .values(next_update=datetime.now(UTC) + timedelta(hours=3, minutes=50))
        )
    assert crl.delta_base(authority.ctx, "citizen").crl_number == second.crl_number


def test_current_reuses_until_a_change_or_half_its_life(authority: CertificateAuthority) -> None:
    row = _issue(authority)
    first = crl.current(authority.ctx, "citizen")
    assert crl.current(authority.ctx, "citizen").der == first.der
    delta = crl.current(authority.ctx, "citizen", delta=True)
    assert delta.delta and crl.current(authority.ctx, "citizen", delta=True).der == delta.der
    assert crl.current(authority.ctx, "citizen").der == first.der  # a delta is not the full
    # a status change moves the CA's epoch: rebuilt
    authority.suspend(OPERATOR, row.id)
    second = crl.current(authority.ctx, "citizen")
    assert second.crl_number > delta.crl_number and second.entry_count == 1

    # just before half its life it is kept, just after it is rebuilt
    def age(hours: float) -> None:
        with authority.ctx.db.transaction() as session:
            session.execute(
                update(CaCrl)
                .where(CaCrl.issuer == "citizen", CaCrl.crl_number == second.crl_number)
                .values(
                    this_update=datetime.now(UTC) - timedelta(hours=hours),
                    next_update=datetime.now(UTC) - timedelta(hours=hours) + timedelta(hours=24),
                )
            )

    age(11.9)
    assert crl.current(authority.ctx, "citizen").crl_number == second.crl_number
    age(12.1)
    third = crl.current(authority.ctx, "citizen")
    assert third.crl_number == second.crl_number + 1
    assert crl.current(authority.ctx, "citizen").crl_number == third.crl_number
    with (
        unchanged(authority.ctx.db, authority.ctx.keystore),
        pytest.raises(Exception, match="nowhere"),
    ):
        crl.current(authority.ctx, "nowhere")


def test_delta_base_is_a_full_crl_of_its_own_ca(authority: CertificateAuthority) -> None:
    with authority.ctx.db.transaction() as session:
        session.execute(delete(CaCrl))
    # no full CRL at all: the current one is published and is the base
    base = crl.delta_base(authority.ctx, "citizen")
    assert (base.ca, base.delta) == ("citizen", False)
    with authority.ctx.db.read() as session:
        assert [r.crl_number for r in session.scalars(select(CaCrl))] == [base.crl_number]
    # a delta CRL never is a base, nor another CA's full CRL
    delta = crl.publish(authority.ctx, "citizen", delta=True)
    second = crl.publish(authority.ctx, "citizen")
    crl.publish(authority.ctx, "legal-person")
    with authority.ctx.db.transaction() as session:
        session.execute(
            update(CaCrl)
            .where(CaCrl.issuer == "citizen", CaCrl.crl_number == base.crl_number)
            .values(next_update=datetime.now(UTC) + timedelta(hours=1))
        )
        session.execute(
            update(CaCrl)
            .where(CaCrl.issuer == "citizen", CaCrl.crl_number == delta.crl_number)
            .values(next_update=datetime.now(UTC) + timedelta(days=10))
        )
        session.execute(
            update(CaCrl)
            .where(CaCrl.issuer == "legal-person")
            .values(crl_number=0, next_update=datetime.now(UTC) + timedelta(days=10))
        )
    chosen = crl.delta_base(authority.ctx, "citizen")
    assert (chosen.ca, chosen.crl_number, chosen.delta) == ("citizen", second.crl_number, False)
