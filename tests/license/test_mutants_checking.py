"""Tests that kill the surviving mutants of license.checking (docs/testing.md).

Every report is compared whole (verdict, state, reasons and the licence's fields), on both the
QR and the signed-data paths, at the edges of the validity window and of the status list.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from license.checking import (
    LicenceCheck,
    State,
    Verdict,
    check_qr,
    check_signed_data,
    check_verified,
    failed_check,
)
from license.days import LICENCE_ZONE, licence_day
from license.errors import LicenceVerificationFailed, Reason
from license.qr import TrustList, encode_payload
from license.signed_data import sign_licence, verify_licence
from license.signer import LicenceSigner
from license.status_list import (
    LicenceStatus,
    StatusList,
    VerifiedStatusList,
    sign_status_list,
    verify_status_list,
)
from tests.license.conftest import DEPT_USCC, OTHER_USCC, MiniCa, sample_metadata

FIRST = date(2026, 1, 10)
LAST = date(2026, 6, 30)
URI = "https://gov.example/status/" + DEPT_USCC


def _lists(signer: LicenceSigner, root: MiniCa, **statuses: LicenceStatus) -> VerifiedStatusList:
    status_list = StatusList(16)
    for index, status in statuses.items():
        status_list.set(int(index.removeprefix("i")), status)
    token = sign_status_list(signer, status_list, uri=URI)
    return verify_status_list(token, [root.root])


def _reports(
    signer: LicenceSigner,
    test_ca: MiniCa,
    lists: dict[str, VerifiedStatusList],
    today: date | None,
    **overrides: object,
) -> list[LicenceCheck]:
    """The QR, signed-data and already-verified reports of one licence."""
    metadata = sample_metadata(**{"valid_from": FIRST, "valid_until": LAST, **overrides})
    token = sign_licence(signer, metadata)
    trust = TrustList([test_ca.root])
    trust.add(signer.chain)
    verified = verify_licence(token, [test_ca.root])
    return [
        check_qr(encode_payload(signer, metadata), trust, lists, today=today),
        check_signed_data(token, [test_ca.root], lists, today=today),
        check_verified(verified, lists, today=today),
    ]


def _expected(signer: LicenceSigner, verdict: Verdict, state: State, *reasons: str) -> LicenceCheck:
    metadata = sample_metadata()
    return LicenceCheck(
        verdict,
        state,
        tuple(reasons),
        metadata.identifier,
        "营业执照",
        "福州示例科技有限公司",
        DEPT_USCC,
        LAST,
        signer.chain[0].subject.rfc4514_string(),
    )


@pytest.mark.parametrize(
    ("today", "verdict", "state", "reasons"),
    [
        (FIRST - timedelta(days=1), Verdict.INVALID, State.NOT_YET_VALID, ("NOT_YET_VALID",)),
        (FIRST, Verdict.VALID, State.VALID, ()),
        (LAST, Verdict.VALID, State.VALID, ()),
        (LAST + timedelta(days=1), Verdict.INVALID, State.EXPIRED, ("EXPIRED",)),
    ],
)
def test_the_window_edges_on_every_path(
    signer: LicenceSigner,
    test_ca: MiniCa,
    today: date,
    verdict: Verdict,
    state: State,
    reasons: tuple[str, ...],
) -> None:
    lists = {DEPT_USCC: _lists(signer, test_ca)}
    for report in _reports(signer, test_ca, lists, today):
        assert report == _expected(signer, verdict, state, *reasons)


@pytest.mark.parametrize(
    ("status", "verdict", "state", "reasons"),
    [
        (LicenceStatus.VALID, Verdict.VALID, State.VALID, ()),
        (LicenceStatus.REVOKED, Verdict.INVALID, State.REVOKED, ("REVOKED",)),
        (LicenceStatus.SUSPENDED, Verdict.INVALID, State.SUSPENDED, ("SUSPENDED",)),
    ],
)
def test_each_status(
    signer: LicenceSigner,
    test_ca: MiniCa,
    status: LicenceStatus,
    verdict: Verdict,
    state: State,
    reasons: tuple[str, ...],
) -> None:
    lists = {DEPT_USCC: _lists(signer, test_ca, i7=status, i6=LicenceStatus.REVOKED)}
    for report in _reports(signer, test_ca, lists, date(2026, 3, 1)):
        assert report == _expected(signer, verdict, state, *reasons)


def test_the_status_is_unknown_without_a_usable_list(
    signer: LicenceSigner, test_ca: MiniCa
) -> None:
    unknown = _expected(signer, Verdict.INDETERMINATE, State.UNKNOWN, "STATUS_UNKNOWN")
    day = date(2026, 3, 1)
    own = _lists(signer, test_ca, i7=LicenceStatus.REVOKED)
    cases: list[tuple[dict[str, VerifiedStatusList], dict[str, object]]] = [
        ({}, {}),  # no list for the issuer
        ({OTHER_USCC: own}, {}),  # a list, under another issuer
        ({DEPT_USCC: own}, {"status_index": None}),  # no index in the licence
        ({DEPT_USCC: own}, {"status_index": 16}),  # an index past the list's end
        ({DEPT_USCC: own}, {"status_index": 400}),
    ]
    for lists, overrides in cases:
        for report in _reports(signer, test_ca, lists, day, **overrides):
            assert report == unknown, (lists.keys(), overrides)
    # the issuer's key, but a list that names another issuer
    forged = VerifiedStatusList(
        own.uri, OTHER_USCC, own.issued_at, own.expires_at, own.ttl, own.statuses
    )
    for report in _reports(signer, test_ca, {DEPT_USCC: forged}, day):
        assert report == unknown
    # a status value the list format does not define (3)
    bad = StatusList(16, bytes([0, 0xC0, 0, 0]))  # index 7 holds 3
    odd = VerifiedStatusList(URI, DEPT_USCC, own.issued_at, own.expires_at, own.ttl, bad)
    for report in _reports(signer, test_ca, {DEPT_USCC: odd}, day):
        assert report == unknown
    # the last index of the list is still read
    last = _lists(signer, test_ca, i15=LicenceStatus.SUSPENDED)
    for report in _reports(signer, test_ca, {DEPT_USCC: last}, day, status_index=15):
        assert report.state is State.SUSPENDED


def test_no_end_date_is_valid_for_ever(signer: LicenceSigner, test_ca: MiniCa) -> None:
    lists = {DEPT_USCC: _lists(signer, test_ca)}
    metadata = sample_metadata(valid_from=FIRST, valid_until=None)
    token = sign_licence(signer, metadata)
    report = check_signed_data(token, [test_ca.root], lists, today=date(2099, 1, 1))
    assert (report.verdict, report.state, report.valid_until) == (Verdict.VALID, State.VALID, None)


def test_today_defaults_to_the_beijing_day(signer: LicenceSigner, test_ca: MiniCa) -> None:
    lists = {DEPT_USCC: _lists(signer, test_ca)}
    today = licence_day()
    for report in _reports(signer, test_ca, lists, None, valid_from=today, valid_until=today):
        assert (report.verdict, report.state) == (Verdict.VALID, State.VALID)
    tomorrow = today + timedelta(days=1)
    for report in _reports(signer, test_ca, lists, None, valid_from=tomorrow, valid_until=None):
        assert report.state is State.NOT_YET_VALID
    yesterday = today - timedelta(days=1)
    for report in _reports(
        signer, test_ca, lists, None, valid_from=yesterday - timedelta(1), valid_until=yesterday
    ):
        assert report.state is State.EXPIRED


def test_licence_day_defaults_to_now() -> None:
    before = datetime.now(UTC).astimezone(LICENCE_ZONE).date()
    day = licence_day()
    after = datetime.now(UTC).astimezone(LICENCE_ZONE).date()
    assert day in (before, after)


def test_a_failed_signature_is_reported_with_its_reason_and_message(
    signer: LicenceSigner, test_ca: MiniCa
) -> None:
    exc = LicenceVerificationFailed(Reason.BAD_SIGNATURE, "the signature does not verify")
    assert failed_check(exc) == LicenceCheck(
        Verdict.INVALID,
        State.UNKNOWN,
        ("BAD_SIGNATURE", "BAD_SIGNATURE: the signature does not verify"),
    )
    metadata = sample_metadata(valid_from=FIRST, valid_until=LAST)
    token = sign_licence(signer, metadata)
    stranger = check_signed_data(token, [], {}, today=FIRST)
    assert (stranger.verdict, stranger.state, stranger.identifier) == (
        Verdict.INVALID,
        State.UNKNOWN,
        "",
    )
    assert len(stranger.reasons) == 2 and stranger.reasons[0] != ""
    unknown = check_qr(encode_payload(signer, metadata), TrustList([test_ca.root]), {})
    assert unknown.reasons[0] == "UNKNOWN_KEY" and unknown.state is State.UNKNOWN
    assert len(unknown.reasons) == 2
