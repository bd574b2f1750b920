"""Request timestamps: out of protobuf's range is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from govtrust.errors import InvalidArgument
from govtrust.rpc.convert import time_in, timestamp_pb
from govtrust.v1 import license_pb2


def test_time_in_unset_valid_and_out_of_range() -> None:
    request = license_pb2.GrantLicenseAccessRequest()
    assert time_in(request, "valid_until") is None
    request.valid_until.CopyFrom(Timestamp(seconds=1_800_000_000))
    assert time_in(request, "valid_until") == datetime.fromtimestamp(1_800_000_000, UTC)
    request.valid_until.CopyFrom(Timestamp(seconds=10**12))  # year ~33,658
    with pytest.raises(InvalidArgument) as info:
        time_in(request, "valid_until")
    assert info.value.violations[0].field == "valid_until"
    assert "not a valid timestamp" in info.value.violations[0].description


def test_timestamp_pb_reads_naive_as_utc() -> None:
    naive = datetime(2026, 11, 22, 12, 0, 0)
    assert timestamp_pb(naive) == timestamp_pb(naive.replace(tzinfo=UTC))
    assert timestamp_pb(None) is None
