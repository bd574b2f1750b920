"""Licence days: a licence's dates (发证日期, 有效期起始, 有效期截止) are calendar days in China,
so the last day is valid through 23:59:59 Beijing time, not UTC. Every comparison of a moment
with a licence date goes through :func:`licence_day`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

LICENCE_ZONE = ZoneInfo("Asia/Shanghai")


def licence_day(moment: datetime | None = None) -> date:
    """The calendar day (Asia/Shanghai) of ``moment`` (default now), to compare licence dates."""
    return (moment or datetime.now(UTC)).astimezone(LICENCE_ZONE).date()
