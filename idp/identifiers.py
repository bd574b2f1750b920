"""Identity numbers: the resident ID number (GB 11643-1999) and the USCC (GB 32100-2015).

Both parsers normalise the input (NFKC, surrounding white space removed, upper case), check it
in a fixed order — length, characters, structure, check character — and raise
:class:`InvalidIdentifier` naming the field and one specific reason (``length``,
``character not allowed``, ``region``, ``birth date``, ``registration authority``,
``check digit``). Error messages never contain the number itself.

USCCs that fail the check character but are real (issued before validation was enforced) are
accepted when they are on the configured allow-list (:func:`load_uscc_allow_list`).
"""

from __future__ import annotations

import operator
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

from govtrust.errors import FieldViolation, InvalidArgument

# --- errors -------------------------------------------------------------------------------------

REASON_LENGTH = "length"
REASON_CHARACTER = "character not allowed"
REASON_REGION = "region"
REASON_BIRTH_DATE = "birth date"
REASON_AUTHORITY = "registration authority"
REASON_CHECK_DIGIT = "check digit"


class InvalidIdentifier(InvalidArgument):
    """An identity number is malformed; ``field`` and ``why`` say which and why.

    ``reason`` (UPPER_SNAKE_CASE) goes into the gRPC ``ErrorInfo``.
    """

    def __init__(self, field: str, why: str, detail: str) -> None:
        description = f"{why}: {detail}"
        super().__init__(f"{field}: {description}", [FieldViolation(field, description)])
        self.field_name = field
        self.why = why
        self.reason = "INVALID_IDENTIFIER_" + why.upper().replace(" ", "_")


def normalise(value: str) -> str:
    """NFKC (full-width digits become ASCII), strip white space, upper-case."""
    if value.isascii():
        return value.strip().upper()
    return unicodedata.normalize("NFKC", value).strip().upper()


# --- GB 11643-1999 resident ID number -----------------------------------------------------------

RESIDENT_ID_LENGTH = 18
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
RESIDENT_ID_CHECK_CHARS = "10X98765432"
_DIGITS = frozenset("0123456789")
_CHECK_CHARS = frozenset(RESIDENT_ID_CHECK_CHARS)

# Province-level prefixes of GB/T 2260 region codes, plus 81/82/83 (residence permits of Hong
# Kong, Macao and Taiwan residents) and 91 (foreigners' permanent residence ID cards, 2023).
PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82", "83", "91",
    }
)  # fmt: skip
EARLIEST_BIRTH_YEAR = 1850


class Sex(StrEnum):
    """Sex derived from the sequence code (odd = male)."""

    MALE = "male"
    FEMALE = "female"


@dataclass(frozen=True)
class ResidentId:
    """A valid resident ID number and what it encodes."""

    number: str
    region_code: str
    birth_date: date
    sequence: str
    sex: Sex


def resident_id_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    total = sum(map(operator.mul, map(int, first17), RESIDENT_ID_WEIGHTS))
    return RESIDENT_ID_CHECK_CHARS[total % 11]


def parse_resident_id(
    value: str, *, field: str = "id_number", today: date | None = None
) -> ResidentId:
    """Validate and decode a resident ID number; raises :class:`InvalidIdentifier`."""
    number = normalise(value)
    if len(number) != RESIDENT_ID_LENGTH:
        raise InvalidIdentifier(
            field, REASON_LENGTH, f"must be {RESIDENT_ID_LENGTH} characters, got {len(number)}"
        )
    well_formed = number[:17].isdigit() and number.isascii() and number[17] in _CHECK_CHARS
    for position, char in enumerate("" if well_formed else number, start=1):
        allowed = char in _DIGITS or (position == RESIDENT_ID_LENGTH and char == "X")
        if not allowed:
            what = "a digit or X" if position == RESIDENT_ID_LENGTH else "a digit"
            raise InvalidIdentifier(field, REASON_CHARACTER, f"position {position} must be {what}")
    if number[:2] not in PROVINCE_CODES:
        raise InvalidIdentifier(field, REASON_REGION, "positions 1-2 are not a province code")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdentifier(
            field, REASON_BIRTH_DATE, "positions 7-14 are not a calendar date"
        ) from None
    today = today or datetime.now(UTC).date()
    if birth > today or birth.year < EARLIEST_BIRTH_YEAR:
        raise InvalidIdentifier(
            field, REASON_BIRTH_DATE, f"must be between {EARLIEST_BIRTH_YEAR} and today"
        )
    if resident_id_check_digit(number[:17]) != number[17]:
        raise InvalidIdentifier(
            field, REASON_CHECK_DIGIT, "character 18 does not match (GB 11643 MOD 11-2)"
        )
    sequence = number[14:17]
    sex = Sex.MALE if int(sequence[2]) % 2 == 1 else Sex.FEMALE
    return ResidentId(
        number=number, region_code=number[:6], birth_date=birth, sequence=sequence, sex=sex
    )


# --- GB 32100-2015 unified social credit code ---------------------------------------------------

USCC_LENGTH = 18
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_VALUES = {c: i for i, c in enumerate(USCC_CHARSET)}
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
# Registration authorities (GB 32100-2015, appendix A): 1 机构编制, 2 外交, 3 司法行政, 4 文化,
# 5 民政, 6 旅游, 7 宗教, 8 工会, 9 市场监管 (工商), A 中央军委改革和编制办公室, N 农业, Y 其他.
REGISTRATION_AUTHORITIES: Mapping[str, str] = {
    "1": "机构编制",
    "2": "外交",
    "3": "司法行政",
    "4": "文化",
    "5": "民政",
    "6": "旅游",
    "7": "宗教",
    "8": "工会",
    "9": "市场监管",
    "A": "中央军委改革和编制办公室",
    "N": "农业",
    "Y": "其他",
}


class LegalPersonKind(StrEnum):
    """Kind of legal person decoded from the USCC's first two characters."""

    ORGAN = "organ"
    INSTITUTION = "institution"
    MASS_ORGANISATION = "mass_organisation"
    SOCIAL_ORGANISATION = "social_organisation"
    PRIVATE_NON_ENTERPRISE = "private_non_enterprise"
    FOUNDATION = "foundation"
    ENTERPRISE = "enterprise"
    INDIVIDUAL_BUSINESS = "individual_business"
    FARMERS_COOPERATIVE = "farmers_cooperative"
    OTHER = "other"


_KINDS: Mapping[tuple[str, str], LegalPersonKind] = {
    ("1", "1"): LegalPersonKind.ORGAN,
    ("1", "2"): LegalPersonKind.INSTITUTION,
    ("1", "3"): LegalPersonKind.MASS_ORGANISATION,
    ("5", "1"): LegalPersonKind.SOCIAL_ORGANISATION,
    ("5", "2"): LegalPersonKind.PRIVATE_NON_ENTERPRISE,
    ("5", "3"): LegalPersonKind.FOUNDATION,
    ("9", "1"): LegalPersonKind.ENTERPRISE,
    ("9", "2"): LegalPersonKind.INDIVIDUAL_BUSINESS,
    ("9", "3"): LegalPersonKind.FARMERS_COOPERATIVE,
}


def legal_person_kind(authority: str, institution_type: str) -> LegalPersonKind:
    """Decode the kind from the registration-authority and institution-type characters."""
    if authority == "N":
        return LegalPersonKind.FARMERS_COOPERATIVE
    return _KINDS.get((authority, institution_type), LegalPersonKind.OTHER)


@dataclass(frozen=True)
class Uscc:
    """A valid (or allow-listed) unified social credit code and what it encodes."""

    code: str
    registration_authority: str
    institution_type: str
    region_code: str
    organisation_code: str
    kind: LegalPersonKind
    allow_listed: bool


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters (all from the charset)."""
    total = sum(USCC_VALUES[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def parse_uscc(
    value: str, *, field: str = "uscc", allow_list: Iterable[str] | frozenset[str] = frozenset()
) -> Uscc:
    """Validate and decode a USCC; raises :class:`InvalidIdentifier`.

    A code whose only fault is its check character is accepted when it is in ``allow_list``.
    """
    code = normalise(value)
    if len(code) != USCC_LENGTH:
        raise InvalidIdentifier(
            field, REASON_LENGTH, f"must be {USCC_LENGTH} characters, got {len(code)}"
        )
    for position, char in enumerate(code, start=1):
        if char not in USCC_VALUES:
            raise InvalidIdentifier(
                field,
                REASON_CHARACTER,
                f"position {position} is not in the GB 32100 character set "
                "(digits and upper-case letters except I, O, S, V, Z)",
            )
    if code[0] not in REGISTRATION_AUTHORITIES:
        raise InvalidIdentifier(
            field, REASON_AUTHORITY, "position 1 is not a GB 32100 registration authority"
        )
    if not all(c in _DIGITS for c in code[2:8]):
        raise InvalidIdentifier(
            field, REASON_REGION, "positions 3-8 must be a six-digit region code"
        )
    allow_listed = False
    if uscc_check_char(code[:17]) != code[17]:
        if code not in allow_list:
            raise InvalidIdentifier(
                field, REASON_CHECK_DIGIT, "character 18 does not match (GB 32100 MOD 31)"
            )
        allow_listed = True
    return Uscc(
        code=code,
        registration_authority=code[0],
        institution_type=code[1],
        region_code=code[2:8],
        organisation_code=code[8:17],
        kind=legal_person_kind(code[0], code[1]),
        allow_listed=allow_listed,
    )


# --- configuration ------------------------------------------------------------------------------

USCC_ALLOW_LIST_ENV = "GOVTRUST_USCC_ALLOW_LIST"
USCC_ALLOW_LIST_FILE = "uscc-allow-list.txt"


def load_uscc_allow_list(data_dir: Path | None, configured: Iterable[str] = ()) -> frozenset[str]:
    """Allow-listed USCCs: the ``uscc_allow_list`` setting (``configured``; the environment's
    ``GOVTRUST_USCC_ALLOW_LIST``, comma separated, through :mod:`govtrust.config`) plus the file
    ``<data-dir>/uscc-allow-list.txt`` (one code per line, ``#`` comments).

    Only well-formed codes (length, character set) are kept; the list exempts the check
    character and nothing else.
    """
    candidates = [c for c in configured if c.strip()]
    if data_dir is not None:
        path = data_dir / USCC_ALLOW_LIST_FILE
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                entry = line.split("#", 1)[0].strip()
                if entry:
                    candidates.append(entry)
    codes = set()
    for candidate in candidates:
        code = normalise(candidate)
        if len(code) == USCC_LENGTH and all(c in USCC_VALUES for c in code):
            codes.add(code)
    return frozenset(codes)
