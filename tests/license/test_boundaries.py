"""Licence validity boundaries (issue #23 item 3).

A licence's dates (有效期起始, 有效期截止) are calendar days in China: valid from the first
second of its first day through the last second of its last day, Beijing time (Asia/Shanghai,
UTC+8) — so it expires at 16:00:00 UTC of its last day, not at UTC midnight. The signing chain
is checked certificate by certificate: an expired or not-yet-valid intermediate breaks it even
when the leaf is within its validity. Hierarchies are built here with ``cryptography``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hsm import KeyAlgorithm, SoftKeyStore
from license.access import GrantState, grant_state
from license.chain import verify_chain
from license.checking import State, check_signed_data
from license.days import LICENCE_ZONE, licence_day
from license.errors import LicenceVerificationFailed, Reason
from license.models import LicenceAccessGrantRow
from license.signed_data import sign_licence
from license.signer import LicenceSigner
from tests.license.conftest import MiniCa, same, sample_metadata
from tests.unchanged import unchanged


def test_the_licence_day_is_the_beijing_calendar_day() -> None:
    assert licence_day(datetime(2026, 12, 4, 15, 59, 59, tzinfo=UTC)) == date(2026, 12, 4)
    assert licence_day(datetime(2026, 12, 4, 16, 0, 0, tzinfo=UTC)) == date(2026, 12, 5)
    # the previous day's evening in UTC is already the next morning in Beijing
    assert licence_day(datetime(2026, 12, 3, 23, 0, 0, tzinfo=UTC)) == date(2026, 12, 4)


def _beijing_midnight(day: date) -> datetime:
    """The first second of ``day`` in Beijing, in UTC (16:00:00 UTC of the day before)."""
    return datetime(day.year, day.month, day.day, tzinfo=LICENCE_ZONE).astimezone(UTC)


@pytest.mark.parametrize(
    ("edge", "state"),
    [
        ("second before the first day", State.NOT_YET_VALID),
        ("first second of the first day", State.UNKNOWN),
        ("last second of the last day", State.UNKNOWN),
        ("first second after the last day", State.EXPIRED),
    ],
)
def test_validity_from_the_first_through_the_last_day_beijing_time(
    signer: LicenceSigner, test_ca: MiniCa, edge: str, state: State
) -> None:
    first = licence_day() + timedelta(days=3)
    last = first + timedelta(days=30)
    token = sign_licence(signer, sample_metadata(valid_from=first, valid_until=last))
    second = timedelta(seconds=1)
    moment = {
        "second before the first day": _beijing_midnight(first) - second,
        "first second of the first day": _beijing_midnight(first),
        "last second of the last day": _beijing_midnight(last + timedelta(days=1)) - second,
        "first second after the last day": _beijing_midnight(last + timedelta(days=1)),
    }[edge]
    # 16:00:00 UTC is already the next day in Beijing (the UTC date is still the old one)
    assert moment.hour in (15, 16)
    # no status list: within the window the state is unknown, outside it the dates decide
    report = check_signed_data(token, [test_ca.root], {}, today=licence_day(moment))
    assert report.state is state, report.reasons


def _ca_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.mark.parametrize("edge", ["expired", "not_yet_valid"])
def test_an_intermediate_outside_its_validity_breaks_the_chain(
    keystore: SoftKeyStore, test_ca: MiniCa, edge: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    if edge == "expired":
        window = (now - timedelta(days=100), now + timedelta(days=10))
        limit, outside = window[1], window[1] + timedelta(seconds=1)
    else:
        window = (now - timedelta(days=10), now + timedelta(days=100))
        limit, outside = window[0], window[0] - timedelta(seconds=1)
    inter = _ca_cert("licence intermediate", inter_key, test_ca.root, test_ca.root_key, *window)
    ref = keystore.generate("licence-seal", KeyAlgorithm.EC_P256)
    public = ref.load_public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    # the leaf is valid on both sides of the intermediate's edge
    leaf = test_ca.issue(
        public, not_before=now - timedelta(days=200), days=400, issuer=(inter, inter_key)
    )
    chain = (leaf, inter)
    assert verify_chain(chain, [test_ca.root], at=limit) == test_ca.root
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_chain(chain, [test_ca.root], at=outside)
    assert info.value.reason is Reason.CERTIFICATE_EXPIRED
    assert "licence intermediate" in info.value.message
    # the same through a signed licence
    token = sign_licence(LicenceSigner(keystore, ref, chain), sample_metadata())
    assert check_signed_data(token, [test_ca.root], {}).state is State.UNKNOWN


def test_an_access_grant_is_active_from_its_first_second_until_its_end() -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    end = start + timedelta(days=7)
    row = LicenceAccessGrantRow(valid_from=start, valid_until=end, revoked_at=None)
    second = timedelta(seconds=1)
    assert grant_state(row, start - second) is GrantState.NOT_YET_VALID
    assert grant_state(row, start) is GrantState.ACTIVE
    assert grant_state(row, end - second) is GrantState.ACTIVE
    assert grant_state(row, end) is GrantState.EXPIRED
    row.revoked_at = start
    assert grant_state(row, start) is GrantState.REVOKED


def test_a_licence_issued_in_its_certificates_last_beijing_day_verifies(
    keystore: SoftKeyStore, test_ca: MiniCa
) -> None:
    """The seal certificate ends at 20:00 UTC, 04:00 Beijing time the next day: a licence sealed
    at 19:00 UTC carries that next Beijing day as ZZBFRQ and is within the certificate's
    validity (comparing with the UTC date refused it as CERTIFICATE_EXPIRED)."""
    from license.qr import TrustList, decode_payload, encode_payload
    from license.signed_data import verify_licence
    from tests.license.conftest import make_signer

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    end = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 20, tzinfo=UTC)
    start = end - timedelta(days=30)
    signer = make_signer(keystore, test_ca, not_before=start, days=30)
    assert signer.chain[0].not_valid_after_utc == end
    sealed_day = licence_day(end - timedelta(hours=1))
    assert sealed_day == tomorrow + timedelta(days=1)  # a day after the UTC date of the end
    meta = sample_metadata(issue_date=sealed_day, valid_from=sealed_day)
    assert verify_licence(sign_licence(signer, meta), [test_ca.root]).metadata == meta
    trust = TrustList([test_ca.root])
    trust.add(signer.chain)
    assert decode_payload(encode_payload(signer, meta), trust).issue_date == sealed_day
    # a day later is outside it, on both paths
    late = sample_metadata(issue_date=sealed_day + timedelta(days=1), valid_from=sealed_day)
    for check in (
        lambda: verify_licence(sign_licence(signer, late), [test_ca.root]),
        lambda: decode_payload(encode_payload(signer, late), trust),
    ):
        with unchanged(None, keystore), pytest.raises(LicenceVerificationFailed) as refused:
            check()
        assert refused.value.reason is Reason.CERTIFICATE_EXPIRED
