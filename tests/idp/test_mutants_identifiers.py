"""Kills the mutants ``make mutate`` found alive in idp/identifiers.py: the exact client-visible
messages and ErrorInfo reasons, the boundaries (1850, today), the decoded fields, and how the
allow-list is read (docs/testing.md "Mutation testing")."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from govtrust.config import load_settings
from idp.identifiers import InvalidIdentifier, load_uscc_allow_list, parse_resident_id, parse_uscc

TODAY = date(2026, 11, 22)
NOT_ON_CHARSET = (
    "character not allowed: position {} is not in the GB 32100 character set "
    "(digits and upper-case letters except I, O, S, V, Z)"
)


@pytest.mark.parametrize(
    ("value", "message", "reason"),
    [
        ("1101051949123100", "length: must be 18 characters, got 16", "INVALID_IDENTIFIER_LENGTH"),
        (
            "1101051949123100A2",
            "character not allowed: position 17 must be a digit",
            "INVALID_IDENTIFIER_CHARACTER_NOT_ALLOWED",
        ),
        (
            "11010519491231002Y",
            "character not allowed: position 18 must be a digit or X",
            "INVALID_IDENTIFIER_CHARACTER_NOT_ALLOWED",
        ),
        (
            "A1010519491231002X",
            "character not allowed: position 1 must be a digit",
            "INVALID_IDENTIFIER_CHARACTER_NOT_ALLOWED",
        ),
        (
            "00010519491231002X",
            "region: positions 1-2 are not a province code",
            "INVALID_IDENTIFIER_REGION",
        ),
        (
            "110105194913310021",
            "birth date: positions 7-14 are not a calendar date",
            "INVALID_IDENTIFIER_BIRTH_DATE",
        ),
        (
            "110105184912310020",
            "birth date: must be between 1850 and today",
            "INVALID_IDENTIFIER_BIRTH_DATE",
        ),
        (
            "110105194912310021",
            "check digit: character 18 does not match (GB 11643 MOD 11-2)",
            "INVALID_IDENTIFIER_CHECK_DIGIT",
        ),
    ],
)
def test_resident_id_messages_and_reasons(value: str, message: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse_resident_id(value, today=TODAY)
    error = info.value
    assert error.message == f"id_number: {message}"
    assert error.field_name == "id_number"
    assert [(v.field, v.description) for v in error.violations] == [("id_number", message)]
    assert error.reason == reason


def test_resident_id_birth_year_and_today_boundaries() -> None:
    # 1850-01-01 is the earliest accepted birth date; a birth today is accepted. Check digits
    # computed by hand from ISO 7064 MOD 11-2 (weights 2^(17-i) mod 11).
    assert parse_resident_id("110105185001010013", today=TODAY).birth_date == date(1850, 1, 1)
    assert parse_resident_id("11010520261122001X", today=TODAY).birth_date == TODAY
    with pytest.raises(InvalidIdentifier, match="between 1850 and today"):
        parse_resident_id("110105202611230015", today=TODAY)


def test_resident_id_without_today_uses_the_utc_date() -> None:
    assert parse_resident_id("11010519491231002X").birth_date == date(1949, 12, 31)
    today = datetime.now(UTC).date()
    first = f"110105{today:%Y%m%d}001"
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(first))
    check = "0123456789X"[(12 - total % 11) % 11]
    assert parse_resident_id(first + check).birth_date == today


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("91350100M000100Y4", "length: must be 18 characters, got 17", "INVALID_IDENTIFIER_LENGTH"),
        (
            "91350100M000100I43",
            NOT_ON_CHARSET.format(16),
            "INVALID_IDENTIFIER_CHARACTER_NOT_ALLOWED",
        ),
        (
            "I1350100M000100Y43",
            NOT_ON_CHARSET.format(1),
            "INVALID_IDENTIFIER_CHARACTER_NOT_ALLOWED",
        ),
        (
            "B1350100M000100Y43",
            "registration authority: position 1 is not a GB 32100 registration authority",
            "INVALID_IDENTIFIER_REGISTRATION_AUTHORITY",
        ),
        (
            "91A50100M000100Y43",
            "region: positions 3-8 must be a six-digit region code",
            "INVALID_IDENTIFIER_REGION",
        ),
        (
            "91350100M000100Y44",
            "check digit: character 18 does not match (GB 32100 MOD 31)",
            "INVALID_IDENTIFIER_CHECK_DIGIT",
        ),
    ],
)
def test_uscc_messages_and_reasons(code: str, message: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse_uscc(code)
    error = info.value
    assert error.message == f"uscc: {message}"
    assert [(v.field, v.description) for v in error.violations] == [("uscc", message)]
    assert error.reason == reason


def test_uscc_decoded_parts() -> None:
    uscc = parse_uscc("91350100M000100Y43")
    assert (uscc.registration_authority, uscc.institution_type) == ("9", "1")
    assert uscc.region_code == "350100"
    assert uscc.organisation_code == "M000100Y4"
    assert uscc.allow_listed is False


def test_allow_list_comments_separators_and_encoding(tmp_path: Path) -> None:
    (tmp_path / "uscc-allow-list.txt").write_text(
        "91350203M0001QAY9B # 厦门 # second comment\n  11100000000013338X\tsome text #\n",
        encoding="utf-8",
    )
    env = {"GOVTRUST_USCC_ALLOW_LIST": "91350100M000100Y44 , 91350100M000100Y45"}
    codes = load_uscc_allow_list(tmp_path, load_settings(env=env).uscc_allow_list)
    assert codes == frozenset({"91350203M0001QAY9B", "91350100M000100Y44", "91350100M000100Y45"})


def test_allow_list_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVTRUST_USCC_ALLOW_LIST", "91350100M000100Y44,91350100M000100Y45")
    assert load_uscc_allow_list(None, load_settings().uscc_allow_list) == frozenset(
        {"91350100M000100Y44", "91350100M000100Y45"}
    )
    monkeypatch.delenv("GOVTRUST_USCC_ALLOW_LIST")
    assert load_uscc_allow_list(None, load_settings().uscc_allow_list) == frozenset()
