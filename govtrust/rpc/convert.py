"""Timestamps between protobuf and the domain, shared by every gRPC adapter.

Incoming timestamps are client data: one outside protobuf's range (years 1–9999) is an
INVALID_ARGUMENT naming the field, never an internal error. Outgoing datetimes may be naive
(SQLite returns naive UTC) and are read as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from govtrust.db import as_utc
from govtrust.errors import InvalidArgument


def time_in(message: Any, field: str) -> datetime | None:
    """The aware UTC datetime of an optional request timestamp (unset → None)."""
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument.field(field, "not a valid timestamp") from None


def timestamp_pb(moment: datetime | None) -> Timestamp | None:
    """A ``Timestamp`` of a datetime (naive → UTC); None stays None (the field stays unset)."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(as_utc(moment))
    return stamp
