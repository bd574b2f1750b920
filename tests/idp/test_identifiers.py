"""GB 11643 and GB 32100 check algorithms: standard vectors, specific reasons, properties."""

from __future__ import annotations

import string
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govtrust.config import load_settings
from idp.identifiers import (
    PROVINCE_CODES,
    REGISTRATION_AUTHORITIES,
    USCC_CHARSET,
    InvalidIdentifier,
    LegalPersonKind,
    Sex,
    load_uscc_allow_list,
    parse_resident_id,
    parse_uscc,
    resident_id_check_digit,
    uscc_check_char,
)

TODAY = date(2026, 11, 22)


# --- standard vectors (STANDARDS.md "Identity numbers") -----------------------------------------


def test_resident_id_vector() -> None:
    resident = parse_resident_id("11010519491231002X", today=TODAY)
    assert resident.region_code == "110105"
    assert resident.birth_date == date(1949, 12, 31)
    assert resident.sequence == "002"
    assert resident.sex is Sex.FEMALE
    assert resident_id_check_digit("11010519491231002") == "X"


def test_resident_id_normalises_lower_case_and_full_width() -> None:
    assert parse_resident_id(" 11010519491231002x ", today=TODAY).number == "11010519491231002X"
    full_width = "１１０１０５１９４９１２３１００２Ｘ"
    assert parse_resident_id(full_width, today=TODAY).number == "11010519491231002X"


def test_sex_from_sequence() -> None:
    first17 = "11010519491231003"
    number = first17 + resident_id_check_digit(first17)
    assert parse_resident_id(number, today=TODAY).sex is Sex.MALE


@pytest.mark.parametrize(
    ("code", "kind", "authority", "region"),
    [
        ("91350100M000100Y43", LegalPersonKind.ENTERPRISE, "9", "350100"),
        ("11100000000013338W", LegalPersonKind.ORGAN, "1", "100000"),
    ],
)
def test_uscc_vectors(code: str, kind: LegalPersonKind, authority: str, region: str) -> None:
    uscc = parse_uscc(code)
    assert uscc.kind is kind
    assert uscc.registration_authority == authority
    assert uscc.region_code == region
    assert not uscc.allow_listed
    assert uscc_check_char(code[:17]) == code[17]


def test_uscc_allow_list() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse_uscc("91350203M0001QAY9B")
    assert info.value.why == "check digit"
    uscc = parse_uscc("91350203M0001QAY9B", allow_list=frozenset({"91350203M0001QAY9B"}))
    assert uscc.allow_listed
    assert uscc.kind is LegalPersonKind.ENTERPRISE
    # The list exempts the check character only: a code with a bad character stays invalid.
    with pytest.raises(InvalidIdentifier):
        parse_uscc("91350203M0001QAY9I", allow_list=frozenset({"91350203M0001QAY9I"}))


# The refusal reasons are tested against literal vectors in test_published_vectors.py.


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        ("11", LegalPersonKind.ORGAN),
        ("12", LegalPersonKind.INSTITUTION),
        ("13", LegalPersonKind.MASS_ORGANISATION),
        ("51", LegalPersonKind.SOCIAL_ORGANISATION),
        ("52", LegalPersonKind.PRIVATE_NON_ENTERPRISE),
        ("53", LegalPersonKind.FOUNDATION),
        ("91", LegalPersonKind.ENTERPRISE),
        ("92", LegalPersonKind.INDIVIDUAL_BUSINESS),
        ("93", LegalPersonKind.FARMERS_COOPERATIVE),
        ("N2", LegalPersonKind.FARMERS_COOPERATIVE),
        ("31", LegalPersonKind.OTHER),
        ("Y1", LegalPersonKind.OTHER),
    ],
)
def test_uscc_kind_decoding(prefix: str, kind: LegalPersonKind) -> None:
    first17 = prefix + "350100MA00000A0"
    assert parse_uscc(first17 + uscc_check_char(first17)).kind is kind


def test_allow_list_from_env_and_file(tmp_path: Path) -> None:
    (tmp_path / "uscc-allow-list.txt").write_text("# comment\n91350203m0001qay9b  # lower\nbad\n")
    settings = load_settings(env={"GOVTRUST_USCC_ALLOW_LIST": "11100000000013338X"})
    codes = load_uscc_allow_list(tmp_path, settings.uscc_allow_list)
    assert codes == frozenset({"91350203M0001QAY9B", "11100000000013338X"})
    assert load_uscc_allow_list(None, load_settings(env={}).uscc_allow_list) == frozenset()


# --- properties ---------------------------------------------------------------------------------

resident_ids = st.builds(
    lambda province, rest, birth, seq: (lambda first17: first17 + resident_id_check_digit(first17))(
        province + rest + birth.strftime("%Y%m%d") + seq
    ),
    st.sampled_from(sorted(PROVINCE_CODES)),
    st.text(string.digits, min_size=4, max_size=4),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.text(string.digits, min_size=3, max_size=3),
)

usccs = st.builds(
    lambda authority, kind, region, org: (lambda first17: first17 + uscc_check_char(first17))(
        authority + kind + region + org
    ),
    st.sampled_from(sorted(REGISTRATION_AUTHORITIES)),
    st.sampled_from(USCC_CHARSET),
    st.text(string.digits, min_size=6, max_size=6),
    st.text(USCC_CHARSET, min_size=9, max_size=9),
)

REPLACEMENTS = string.digits + string.ascii_uppercase + "x-"


@given(resident_ids)
def test_every_generated_resident_id_passes(number: str) -> None:
    resident = parse_resident_id(number, today=TODAY)
    assert resident.number == number
    assert resident.sex is (Sex.MALE if int(number[16]) % 2 else Sex.FEMALE)


@given(resident_ids, st.integers(0, 17), st.sampled_from(REPLACEMENTS))
def test_every_single_character_change_of_a_resident_id_is_caught(
    number: str, position: int, replacement: str
) -> None:
    changed = number[:position] + replacement + number[position + 1 :]
    if changed.upper() == number:
        return
    with pytest.raises(InvalidIdentifier):
        parse_resident_id(changed, today=TODAY)


@given(usccs)
def test_every_generated_uscc_passes(code: str) -> None:
    uscc = parse_uscc(code)
    assert uscc.code == code
    assert not uscc.allow_listed


@given(usccs, st.integers(0, 17), st.sampled_from(REPLACEMENTS))
def test_every_single_character_change_of_a_uscc_is_caught(
    code: str, position: int, replacement: str
) -> None:
    changed = code[:position] + replacement + code[position + 1 :]
    if changed.upper() == code:
        return
    with pytest.raises(InvalidIdentifier):
        parse_uscc(changed)
