"""Licence identifiers (GB/T 36904 practice, STANDARDS.md) against literal vectors (issue #23,
item 2): the published vector plus literals chosen so that every one of the 36 check characters
occurs once, each re-checked here by a separately written ISO 7064 MOD 37,36 (the standard's
verification form: a string with its check character is valid when the final state is 1), never
by :func:`license.identifiers.mod37_36_check`."""

from __future__ import annotations

import pytest

from license.identifiers import (
    InvalidLicenceIdentifier,
    build_identifier,
    is_valid_identifier,
    mod37_36_check,
    parse_identifier,
)

PUBLISHED = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

LITERALS = (
    PUBLISHED,
    "1.2.156.3005.2.12110000MA00316761123.11430000006122244L.2024000245.012.0",
    "1.2.156.3005.2.91350100M000100Y43001.11100000000013338W.ZZ00042A.007.1",
    "1.2.156.3005.2.11100000000013338W011.12110000MA00316761.ZZ00012A.001.2",
    "1.2.156.3005.2.11100000000013338W002.91350100M000100Y43.ZZ00021A.010.3",
    "1.2.156.3005.2.91350100M000100Y43001.12110000MA00316761.ZZ00030A.007.4",
    "1.2.156.3005.2.91350100M000100Y43001.11430000006122244L.2024000014.003.5",
    "1.2.156.3005.2.11100000000013338W002.11430000006122244L.2024000119.006.6",
    "1.2.156.3005.2.11100000000013338W002.11430000006122244L.ZZ00177A.010.7",
    "1.2.156.3005.2.12110000MA00316761123.11430000006122244L.2024000133.008.8",
    "1.2.156.3005.2.91350100M000100Y43001.91350100M000100Y43.ZZ00006A.007.9",
    "1.2.156.3005.2.91350100M000100Y43001.91350100M000100Y43.2024000154.011.A",
    "1.2.156.3005.2.11100000000013338W011.91350100M000100Y43.ZZ00036A.001.B",
    "1.2.156.3005.2.11100000000013338W002.91350100M000100Y43.2024000595.002.C",
    "1.2.156.3005.2.12110000MA00316761123.91350100M000100Y43.2024000385.008.D",
    "1.2.156.3005.2.91350100M000100Y43001.11100000000013338W.2024000182.003.E",
    "1.2.156.3005.2.12110000MA00316761123.11100000000013338W.2024000077.012.F",
    "1.2.156.3005.2.11100000000013338W002.12110000MA00316761.2024000427.002.G",
    "1.2.156.3005.2.11100000000013338W002.12110000MA00316761.2024000091.002.H",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.ZZ00000A.001.I",
    "1.2.156.3005.2.12110000MA00316761123.11430000006122244L.ZZ00003A.004.J",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.2024000560.009.K",
    "1.2.156.3005.2.11100000000013338W011.12110000MA00316761.ZZ00060A.001.L",
    "1.2.156.3005.2.11100000000013338W002.11430000006122244L.ZZ00033A.010.M",
    "1.2.156.3005.2.11100000000013338W011.91350100M000100Y43.2024000140.009.N",
    "1.2.156.3005.2.11100000000013338W011.11100000000013338W.2024000056.009.O",
    "1.2.156.3005.2.11100000000013338W002.11430000006122244L.2024000679.002.P",
    "1.2.156.3005.2.12110000MA00316761123.91350100M000100Y43.2024000049.008.Q",
    "1.2.156.3005.2.91350100M000100Y43001.11430000006122244L.ZZ00066A.007.R",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.2024000448.005.S",
    "1.2.156.3005.2.91350100M000100Y43001.11430000006122244L.ZZ00018A.007.T",
    "1.2.156.3005.2.91350100M000100Y43001.91350100M000100Y43.2024000266.003.U",
    "1.2.156.3005.2.11100000000013338W002.11430000006122244L.2024000007.002.V",
    "1.2.156.3005.2.12110000MA00316761123.11430000006122244L.ZZ00051A.004.W",
    "1.2.156.3005.2.91350100M000100Y43001.91350100M000100Y43.2024000826.011.X",
    "1.2.156.3005.2.91350100M000100Y43001.12110000MA00316761.2024000098.003.Y",
    "1.2.156.3005.2.11100000000013338W002.11100000000013338W.2024000511.002.Z",
)


def _iso7064_mod37_36_valid(data_with_check: str) -> bool:
    """ISO 7064 hybrid system, M = 36: P1 = M; S = P + a; P' = (||S||_M * 2) mod (M + 1), where
    ||S||_M is S mod M with 0 read as M; the string is valid when ||S||_M = 1 after the check."""
    m = 36
    p = m
    s = 0
    for char in data_with_check:
        s = (p + _ALPHABET.index(char)) % m or m
        p = (s * 2) % (m + 1)
    return s == 1


def _fields(identifier: str) -> str:
    return identifier.removeprefix("1.2.156.3005.2.").replace(".", "")


def test_the_literals_are_right_by_the_independent_implementation() -> None:
    assert {i[-1] for i in LITERALS} == set(_ALPHABET)
    for identifier in LITERALS:
        assert _iso7064_mod37_36_valid(_fields(identifier)), identifier
        # and exactly one check character makes it valid
        body = _fields(identifier)[:-1]
        assert [c for c in _ALPHABET if _iso7064_mod37_36_valid(body + c)] == [identifier[-1]]


@pytest.mark.parametrize("identifier", LITERALS)
def test_literal_identifiers_parse_and_rebuild(identifier: str) -> None:
    ident = parse_identifier(identifier)
    assert str(ident) == identifier
    assert mod37_36_check(_fields(identifier)[:-1]) == identifier[-1]
    assert str(
        build_identifier(ident.type_code, ident.issuer_code, ident.serial, ident.version)
    ) == (identifier)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        # every other check character on the published vector
        *((PUBLISHED[:-1] + c, "identifier.check") for c in _ALPHABET if c != "U"),
        (PUBLISHED[:-1] + "u", "identifier.check"),
        (PUBLISHED[:-1] + "UU", "identifier.check"),
        (PUBLISHED[:-1], "identifier.check"),
        # adjacent transpositions inside the serial and across the version
        (PUBLISHED.replace(".20230000403.", ".20230000430."), "identifier.check"),
        (PUBLISHED.replace(".20230000403.", ".02230000403."), "identifier.check"),
        # a field changed but the check left as it was
        (PUBLISHED.replace(".001.U", ".002.U"), "identifier.check"),
        (PUBLISHED.replace("W011.", "W012."), "identifier.check"),
        (PUBLISHED.replace(".20230000403.", ".20230000404."), "identifier.check"),
        # the parts themselves
        (PUBLISHED.replace("1.2.156.3005.2.", "1.2.156.3005.1."), "identifier.prefix"),
        (PUBLISHED.replace("1.2.156.3005.2.", "1.2.156.3005.2.."), "identifier"),
        (
            PUBLISHED.replace("11100000000013338W011", "11100000000013338X011"),
            "identifier.type_code",
        ),
        (
            PUBLISHED.replace("11100000000013338W011", "11100000000013338W11"),
            "identifier.type_code",
        ),
        (
            PUBLISHED.replace("11100000000013338W011", "1110000000001333OW011"),
            "identifier.type_code",
        ),
        (PUBLISHED.replace("11430000006122244L", "11430000006122244M"), "identifier.issuer_code"),
        (PUBLISHED.replace("11430000006122244L", "1143000000612224SL"), "identifier.issuer_code"),
        (PUBLISHED.replace(".20230000403.", ".2023-0000403."), "identifier.serial"),
        (PUBLISHED.replace(".20230000403.", ".２０２３０００４０３."), "identifier.serial"),
        (PUBLISHED.replace(".001.", ".1.", 1), "identifier.version"),
        (PUBLISHED.replace(".001.", ".000.", 1), "identifier.version"),
    ],
)
def test_wrong_identifiers_are_refused_naming_the_part(value: str, field: str) -> None:
    with pytest.raises(InvalidLicenceIdentifier) as info:
        parse_identifier(value)
    assert info.value.violations[0].field == field
    assert not is_valid_identifier(value)
