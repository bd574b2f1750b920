"""VerifyLicense on the last day of a licence (issue #23 item 3), over a production platform.

有效期截止 is a calendar day in China: the licence is valid through 23:59:59 Beijing time of
that day (15:59:59 UTC) and expired from 00:00:00 Beijing time of the next (16:00:00 UTC, when
the UTC date is still the last day).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from license.days import LICENCE_ZONE, licence_day
from tests.license import test_production
from tests.license.test_production import Prod
from tests.verify.conftest import VERIFIER
from verify.licences import LicenceCheckRequest, verify_licence_check
from verify.report import LicenseStatus, ReasonCode, VerificationReport
from verify.service import context_for

prod = test_production.prod  # the production platform fixture


def _check(prod: Prod, signed_data: str, at: datetime) -> VerificationReport:
    verified = verify_licence_check(
        context_for(prod.platform),
        VERIFIER,
        LicenceCheckRequest("signed_data", signed_data, at_time=at),
    )
    verified.audited.result(timeout=30)
    return verified.report


def _next_beijing_midnight(day: date) -> datetime:
    following = day + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=LICENCE_ZONE).astimezone(
        UTC
    )


def test_the_last_day_is_valid_through_its_end_beijing_time(prod: Prod) -> None:
    last = licence_day() + timedelta(days=2)
    licence = prod.issue(valid_from="", valid_until=last.isoformat(), skip_document=True)
    end = _next_beijing_midnight(last)
    assert end.date() == last  # the UTC date is still the last day
    report = _check(prod, licence.signed_data, end - timedelta(seconds=1))
    assert ReasonCode.LICENSE_EXPIRED not in {r.code for r in report.reasons}, report.reasons
    assert report.license is not None and report.license.status is LicenseStatus.VALID
    report = _check(prod, licence.signed_data, end)
    assert ReasonCode.LICENSE_EXPIRED in {r.code for r in report.reasons}, report.reasons
    assert report.license is not None and report.license.status is LicenseStatus.EXPIRED
