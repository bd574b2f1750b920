"""Licence identifiers: the STANDARDS.md vector, field-specific errors, single-character changes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from license.identifiers import (
    ALPHABET,
    InvalidLicenceIdentifier,
    build_identifier,
    is_valid_identifier,
    mod37_36_check,
    parse_identifier,
)

VECTOR = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
TYPE_CODE = "11100000000013338W011"
ISSUER = "11430000006122244L"


def test_vector_check_character() -> None:
    assert mod37_36_check(f"{TYPE_CODE}{ISSUER}20230000403001") == "U"


def test_vector_parses_and_rebuilds() -> None:
    ident = parse_identifier(VECTOR)
    assert ident.type_code == TYPE_CODE
    assert ident.issuer_code == ISSUER
    assert ident.serial == "20230000403"
    assert ident.version == 1
    assert ident.check == "U"
    assert ident.defining_authority == "11100000000013338W"
    assert str(ident) == VECTOR
    assert str(build_identifier(TYPE_CODE, ISSUER, "20230000403", 1)) == VECTOR


def test_new_version_gets_new_check() -> None:
    v2 = parse_identifier(VECTOR).with_version(2)
    assert str(v2).startswith(
        "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002."
    )
    assert parse_identifier(str(v2)).version == 2


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("", "identifier"),
        ("1.2.156.3005.3.11100000000013338W011.11430000006122244L.1.001.U", "identifier.prefix"),
        ("1.2.156.3005.2.11100000000013338W011.11430000006122244L.1.001", "identifier"),
        ("1.2.156.3005.2.11100000000013338W01.11430000006122244L.1.001.U", "identifier.type_code"),
        ("1.2.156.3005.2.11100000000013338W0A1.11430000006122244L.1.001.U", "identifier.type_code"),
        ("1.2.156.3005.2.11100000000013338X011.11430000006122244L.1.001.U", "identifier.type_code"),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244M.1.001.U",
            "identifier.issuer_code",
        ),
        ("1.2.156.3005.2.11100000000013338W011.1143000000612224.1.001.U", "identifier.issuer_code"),
        ("1.2.156.3005.2.11100000000013338W011.11430000006122244L.ab.001.U", "identifier.serial"),
        ("1.2.156.3005.2.11100000000013338W011.11430000006122244L..001.U", "identifier.serial"),
        ("1.2.156.3005.2.11100000000013338W011.11430000006122244L.1.01.U", "identifier.version"),
        ("1.2.156.3005.2.11100000000013338W011.11430000006122244L.1.000.U", "identifier.version"),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.V",
            "identifier.check",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.u",
            "identifier.check",
        ),
    ],
)
def test_field_specific_errors(value: str, field: str) -> None:
    with pytest.raises(InvalidLicenceIdentifier) as info:
        parse_identifier(value)
    assert info.value.violations[0].field == field
    assert not is_valid_identifier(value)


def test_build_rejects_bad_parts() -> None:
    with pytest.raises(InvalidLicenceIdentifier, match="serial"):
        build_identifier(TYPE_CODE, ISSUER, "a-1")
    with pytest.raises(InvalidLicenceIdentifier, match="version"):
        build_identifier(TYPE_CODE, ISSUER, "1", 1000)


def test_allow_listed_uscc_accepted() -> None:
    odd = "91350203M0001QAY9B"  # real code that fails the GB 32100 check (STANDARDS.md)
    with pytest.raises(InvalidLicenceIdentifier):
        build_identifier(TYPE_CODE, odd, "1")
    ident = build_identifier(TYPE_CODE, odd, "1", allow_list={odd})
    assert parse_identifier(str(ident), allow_list={odd}) == ident


serials = st.text(alphabet=ALPHABET, min_size=1, max_size=20)
CHANGE_CHARS = ALPHABET + "abcxyz.-_ /"


@settings(max_examples=500, deadline=None)
@given(
    serial=serials,
    version=st.integers(min_value=1, max_value=999),
    data=st.data(),
)
def test_every_single_character_change_is_caught(
    serial: str, version: int, data: st.DataObject
) -> None:
    ident = str(build_identifier(TYPE_CODE, ISSUER, serial, version))
    assert is_valid_identifier(ident)
    position = data.draw(st.integers(min_value=0, max_value=len(ident) - 1))
    replacement = data.draw(st.sampled_from(CHANGE_CHARS).filter(lambda c: c != ident[position]))
    changed = ident[:position] + replacement + ident[position + 1 :]
    assert not is_valid_identifier(changed), changed


def test_every_single_substitution_of_the_vector_is_caught() -> None:
    for position, original in enumerate(VECTOR):
        for replacement in ALPHABET + ".":
            if replacement != original:
                changed = VECTOR[:position] + replacement + VECTOR[position + 1 :]
                assert not is_valid_identifier(changed), changed
