"""Identity numbers against literal vectors (issue #23, item 2), never against values computed by
the code under test.

Every valid number below is a literal. The published ones come from the standards' own examples
(GB 11643-1999 appendix: ``11010519491231002X``, ``440524188001010014``; GB 32100 and GB/T 36904
practice, STANDARDS.md: ``91350100M000100Y43``, ``11100000000013338W``, ``11430000006122244L``);
the others were chosen so that every check character of each alphabet occurs once (a swapped
pair in a check table then breaks at least two of them). Each literal is re-checked here by the
independent, test-only implementations in :mod:`tests.idp.helpers`, so the table itself cannot
be silently wrong.
"""

from __future__ import annotations

from datetime import date

import pytest

from idp.identifiers import (
    InvalidIdentifier,
    LegalPersonKind,
    Sex,
    parse_resident_id,
    parse_uscc,
    resident_id_check_digit,
    uscc_check_char,
)
from tests.idp.helpers import gb32100_check, mod11_2

TODAY = date(2026, 11, 22)

# GB 11643-1999 appendix examples first, then one number per check character "10X98765432".
RESIDENT_IDS = (
    ("11010519491231002X", date(1949, 12, 31), Sex.FEMALE),
    ("440524188001010014", date(1880, 1, 1), Sex.MALE),
    ("110105198001016661", date(1980, 1, 1), Sex.FEMALE),
    ("440524200012310740", date(2000, 12, 31), Sex.FEMALE),
    ("35010219920229481X", date(1992, 2, 29), Sex.MALE),
    ("650102197006151119", date(1970, 6, 15), Sex.MALE),
    ("110105198001010008", date(1980, 1, 1), Sex.FEMALE),
    ("110105198001014447", date(1980, 1, 1), Sex.FEMALE),
    ("350102199202290376", date(1992, 2, 29), Sex.MALE),
    ("440524200012312965", date(2000, 12, 31), Sex.FEMALE),
    ("440524200012310724", date(2000, 12, 31), Sex.FEMALE),
    ("810000198510101483", date(1985, 10, 10), Sex.FEMALE),
    ("110105198001012222", date(1980, 1, 1), Sex.FEMALE),
)

# Published USCCs first, then one code per check character of the 31-character alphabet.
USCCS = (
    ("91350100M000100Y43", LegalPersonKind.ENTERPRISE),
    ("11100000000013338W", LegalPersonKind.ORGAN),
    ("11430000006122244L", LegalPersonKind.ORGAN),
    ("91110000MA04751400", LegalPersonKind.ENTERPRISE),
    ("12110000MA00316761", LegalPersonKind.INSTITUTION),
    ("Y1350100MA00712712", LegalPersonKind.OTHER),
    ("53310115MA01504613", LegalPersonKind.FOUNDATION),
    ("92350100MA00079194", LegalPersonKind.INDIVIDUAL_BUSINESS),
    ("52440300MA02375705", LegalPersonKind.PRIVATE_NON_ENTERPRISE),
    ("51350100MA00395956", LegalPersonKind.SOCIAL_ORGANISATION),
    ("92350100MA03880317", LegalPersonKind.INDIVIDUAL_BUSINESS),
    ("12110000MA01267048", LegalPersonKind.INSTITUTION),
    ("52440300MA01425429", LegalPersonKind.PRIVATE_NON_ENTERPRISE),
    ("11310115MA0308841A", LegalPersonKind.ORGAN),
    ("92350100MA0293003B", LegalPersonKind.INDIVIDUAL_BUSINESS),
    ("N1110000MA0443464C", LegalPersonKind.FARMERS_COOPERATIVE),
    ("91110000MA0285084D", LegalPersonKind.ENTERPRISE),
    ("11310115MA0213813E", LegalPersonKind.ORGAN),
    ("92350100MA0102947F", LegalPersonKind.INDIVIDUAL_BUSINESS),
    ("93440300MA0015838G", LegalPersonKind.FARMERS_COOPERATIVE),
    ("91110000MA0000000H", LegalPersonKind.ENTERPRISE),
    ("31440300MA0174218J", LegalPersonKind.OTHER),
    ("12110000MA0221732K", LegalPersonKind.INSTITUTION),
    ("N1110000MA0063352L", LegalPersonKind.FARMERS_COOPERATIVE),
    ("52440300MA0427626M", LegalPersonKind.PRIVATE_NON_ENTERPRISE),
    ("A1310115MA0467221N", LegalPersonKind.OTHER),
    ("53310115MA0055433P", LegalPersonKind.FOUNDATION),
    ("51350100MA0229651Q", LegalPersonKind.SOCIAL_ORGANISATION),
    ("31440300MA0364274R", LegalPersonKind.OTHER),
    ("53310115MA0530573T", LegalPersonKind.FOUNDATION),
    ("11310115MA0023757U", LegalPersonKind.ORGAN),
    ("A1310115MA0087109W", LegalPersonKind.OTHER),
    ("52440300MA0047514X", LegalPersonKind.PRIVATE_NON_ENTERPRISE),
    ("N1110000MA0633520Y", LegalPersonKind.FARMERS_COOPERATIVE),
)


def test_the_tables_are_right_by_the_independent_implementation() -> None:
    """The literals are valid by a separately written MOD 11-2 / GB 32100 and cover every
    check character, so the tests below test the parser and not the table."""
    assert {n[17] for n, _, _ in RESIDENT_IDS} == set("0123456789X")
    assert {c[17] for c, _ in USCCS} == set("0123456789ABCDEFGHJKLMNPQRTUWXY")
    for number, _, _ in RESIDENT_IDS:
        assert mod11_2(number[:17]) == number[17], number
    for code, _ in USCCS:
        assert gb32100_check(code[:17]) == code[17], code
    # The GB 32100 weights written out in the standard, against the helper's construction.
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    for code, _ in USCCS:
        total = sum(alphabet.index(c) * w for c, w in zip(code[:17], weights, strict=True))
        assert alphabet[(31 - total % 31) % 31] == code[17]


@pytest.mark.parametrize(("number", "birth", "sex"), RESIDENT_IDS)
def test_published_and_literal_resident_ids_are_accepted(
    number: str, birth: date, sex: Sex
) -> None:
    resident = parse_resident_id(number, today=TODAY)
    assert resident.number == number
    assert resident.region_code == number[:6]
    assert resident.birth_date == birth
    assert resident.sex is sex
    assert resident_id_check_digit(number[:17]) == number[17]


@pytest.mark.parametrize(("code", "kind"), USCCS)
def test_published_and_literal_usccs_are_accepted(code: str, kind: LegalPersonKind) -> None:
    uscc = parse_uscc(code)
    assert uscc.code == code
    assert uscc.kind is kind
    assert uscc.region_code == code[2:8]
    assert uscc.organisation_code == code[8:17]
    assert not uscc.allow_listed
    assert uscc_check_char(code[:17]) == code[17]


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("11010519491231002x", "11010519491231002X"),  # lower-case x
        ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"),  # full-width digits and X
        ("１１０１０５１９４９１２３１００２ｘ", "11010519491231002X"),  # full-width lower-case x
        ("\u300011010519491231002X\t", "11010519491231002X"),  # ideographic space, tab
    ],
)
def test_resident_id_spellings_normalise_to_the_canonical_number(
    value: str, canonical: str
) -> None:
    assert parse_resident_id(value, today=TODAY).number == canonical


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("91350100m000100y43", "91350100M000100Y43"),
        ("９１３５０１００Ｍ０００１００Ｙ４３", "91350100M000100Y43"),
    ],
)
def test_uscc_spellings_normalise_to_the_canonical_code(value: str, canonical: str) -> None:
    assert parse_uscc(value).code == canonical


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # wrong check character: every other check character on a published number
        *((f"11010519491231002{c}", "check digit") for c in "0123456789"),
        *((f"44052418800101001{c}", "check digit") for c in "012356789X"),
        ("11010519491231002Y", "character not allowed"),
        # transposition of two adjacent digits (MOD 11-2 catches all of them)
        ("11010519491231020X", "check digit"),
        ("440524188001010104", "check digit"),
        # length
        ("", "length"),
        ("11010519491231002", "length"),
        ("11010519491231002X0", "length"),
        ("11010519491231002XX", "length"),
        ("110105491231002X", "length"),  # a 15-digit-era date with the check appended
        # characters
        ("1101051949123100X2", "character not allowed"),
        ("X1010519491231002X", "character not allowed"),
        ("11010519491231002-", "character not allowed"),
        ("11010519491231 02X", "character not allowed"),
        ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "character not allowed"),  # Arabic-Indic digits are not ASCII
        ("11010519491231002Ｙ", "character not allowed"),
        # region: the first two digits must be a province code
        ("00010519491231002X", "region"),
        ("99010519491231002X", "region"),
        ("19010519491231002X", "region"),
        # birth date
        ("110105194913310021", "birth date"),  # month 13
        ("110105194900310021", "birth date"),  # month 0
        ("110105194902300021", "birth date"),  # 30 February
        ("110105190002290025", "birth date"),  # 1900 is not a leap year
        ("110105199002290021", "birth date"),  # neither is 1990
        ("110105209901010021", "birth date"),  # in the future
        ("110105184912310021", "birth date"),  # before 1850
    ],
)
def test_wrong_resident_ids_are_refused_with_the_specific_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse_resident_id(value, field="id_number", today=TODAY)
    assert info.value.why == reason
    assert info.value.violations[0].field == "id_number"
    assert info.value.violations[0].description.startswith(reason)
    if len(value) >= 10:
        assert value[:10] not in info.value.message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # wrong check character
        ("91350100M000100Y44", "check digit"),
        ("91350100M000100Y40", "check digit"),
        ("11100000000013338X", "check digit"),
        ("11100000000013338Y", "check digit"),
        ("11430000006122244M", "check digit"),
        ("91350203M0001QAY9B", "check digit"),  # real but fails the check (allow-list only)
        # transposition
        ("91350100M000010Y43", "check digit"),
        # length
        ("", "length"),
        ("91350100M000100Y4", "length"),
        ("91350100M000100Y430", "length"),
        ("91350100m000100Y43!", "length"),
        # characters: I, O, S, V, Z are not in the GB 32100 alphabet, nor punctuation
        *((f"91350100M000100{c}43", "character not allowed") for c in "IOSVZ"),
        ("11100000000013338I", "character not allowed"),
        ("91350100M000100Y4-", "character not allowed"),
        ("91350100M000100Y4Ⅰ", "character not allowed"),  # ROMAN NUMERAL ONE becomes I
        # registration authority (position 1) and region (positions 3-8)
        ("B1350100M000100Y43", "registration authority"),
        ("01350100M000100Y43", "registration authority"),
        ("9135A100M000100Y43", "region"),
        ("91M50100M000100Y43", "region"),
    ],
)
def test_wrong_usccs_are_refused_with_the_specific_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse_uscc(value, field="uscc")
    assert info.value.why == reason
    assert info.value.violations[0].field == "uscc"
    if len(value) >= 10:
        assert value[:10] not in info.value.message
