"""Kills the mutants ``make mutate`` found alive in license/identifiers.py: the exact part named
and message of each refusal, the boundaries, and that the allow-list and ``check_uscc`` reach
every part (docs/testing.md "Mutation testing")."""

from __future__ import annotations

import pytest

from license.identifiers import (
    InvalidLicenceIdentifier,
    build_identifier,
    check_type_code,
    is_valid_identifier,
    mod37_36_check,
    parse_identifier,
)

VECTOR = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
P = "1.2.156.3005.2."
TYPE_CODE = "11100000000013338W011"
ISSUER = "11430000006122244L"
GB32100_CHECK = "check digit: character 18 does not match (GB 32100 MOD 31)"
# A real USCC whose check character is wrong (idp tests' allow-list example).
LEGACY = "91350203M0001QAY9B"


@pytest.mark.parametrize(
    ("value", "field", "description"),
    [
        ("", "identifier", "must be a non-empty string"),
        ("1.2.156.3005.3." + VECTOR[15:], "identifier.prefix", "must start with 1.2.156.3005.2."),
        (
            f"{P}{TYPE_CODE}.{ISSUER}.1.001",
            "identifier",
            "must have five dot-separated parts after the prefix "
            "(type code, issuer code, serial, version, check), got 4",
        ),
        (
            f"{P}{TYPE_CODE[:-1]}.{ISSUER}.1.001.U",
            "identifier.type_code",
            "must be 21 characters (USCC + 3 digits), got 20",
        ),
        (
            f"{P}11100000000013338WA01.{ISSUER}.1.001.U",
            "identifier.type_code",
            "characters 19-21 must be a three-digit sequence",
        ),
        (
            f"{P}11100000000013338W\u066301.{ISSUER}.1.001.U",
            "identifier.type_code",
            "characters 19-21 must be a three-digit sequence",
        ),
        (
            f"{P}11100000000013338X011.{ISSUER}.1.001.U",
            "identifier.type_code",
            f"defining authority USCC invalid: {GB32100_CHECK}",
        ),
        (
            f"{P}{TYPE_CODE}.{ISSUER[:-2]}.1.001.U",
            "identifier.issuer_code",
            "must be an 18-character USCC, got 16",
        ),
        (
            f"{P}{TYPE_CODE}.11430000006122244M.1.001.U",
            "identifier.issuer_code",
            f"issuing department USCC invalid: {GB32100_CHECK}",
        ),
        (f"{P}{TYPE_CODE}.{ISSUER}..001.U", "identifier.serial", "must not be empty"),
        (
            f"{P}{TYPE_CODE}.{ISSUER}.{'1' * 65}.001.U",
            "identifier.serial",
            "must be at most 64 characters",
        ),
        (
            f"{P}{TYPE_CODE}.{ISSUER}.1a.001.U",
            "identifier.serial",
            "position 2 must be a digit or upper-case letter A-Z",
        ),
        (f"{P}{TYPE_CODE}.{ISSUER}.1.01.U", "identifier.version", "must be three digits, e.g. 001"),
        (f"{P}{TYPE_CODE}.{ISSUER}.1.000.U", "identifier.version", "must be between 001 and 999"),
        (VECTOR[:-1] + "u", "identifier.check", "must be one character 0-9A-Z"),
        (
            VECTOR[:-1] + "V",
            "identifier.check",
            "does not match (ISO 7064 MOD 37,36 over the fields)",
        ),
    ],
)
def test_each_refusal_names_its_part_and_reason(value: str, field: str, description: str) -> None:
    with pytest.raises(InvalidLicenceIdentifier) as info:
        parse_identifier(value)
    error = info.value
    assert error.message == f"{field}: {description}"
    assert error.field_name == field
    assert [(v.field, v.description) for v in error.violations] == [(field, description)]
    assert error.reason == "INVALID_LICENCE_IDENTIFIER"
    assert not is_valid_identifier(value)


def test_serial_of_64_characters_is_accepted() -> None:
    ident = build_identifier(TYPE_CODE, ISSUER, "A" * 64)
    assert parse_identifier(str(ident)).serial == "A" * 64


def test_build_defaults_to_version_001_and_gives_the_vector() -> None:
    assert str(build_identifier(TYPE_CODE, ISSUER, "20230000403")) == VECTOR


def test_check_type_code_checks_the_uscc_by_default() -> None:
    with pytest.raises(InvalidLicenceIdentifier, match="defining authority USCC invalid"):
        check_type_code("11100000000013338X011")
    check_type_code("11100000000013338X011", check_uscc=False)


def test_allow_list_reaches_both_uscc_parts() -> None:
    allow = frozenset({LEGACY})
    with pytest.raises(InvalidLicenceIdentifier):
        build_identifier(LEGACY + "001", ISSUER, "1")
    with pytest.raises(InvalidLicenceIdentifier):
        build_identifier(TYPE_CODE, LEGACY, "1")
    by_type = str(build_identifier(LEGACY + "001", ISSUER, "1", allow_list=allow))
    by_issuer = str(build_identifier(TYPE_CODE, LEGACY, "1", allow_list=allow))
    for value in (by_type, by_issuer):
        assert not is_valid_identifier(value)
        assert is_valid_identifier(value, allow_list=allow)
        assert str(parse_identifier(value, allow_list=allow)) == value
        # a verifier (check_uscc=False) accepts the form without the list
        assert str(parse_identifier(value, check_uscc=False)) == value


def test_mod37_36_refuses_a_character_outside_the_alphabet() -> None:
    with pytest.raises(ValueError, match=r"^character 'a' is not in 0-9A-Z$"):
        mod37_36_check("12a")


def test_version_999_is_the_last_accepted() -> None:
    ident = build_identifier(TYPE_CODE, ISSUER, "1", 999)
    assert str(ident).endswith(".999." + ident.check)
    assert parse_identifier(str(ident)).version == 999
    with pytest.raises(InvalidLicenceIdentifier, match="must be between 001 and 999"):
        build_identifier(TYPE_CODE, ISSUER, "1", 1000)
