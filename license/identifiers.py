"""Licence identifiers (证照标识, GB/T 36903 practice) and their ISO 7064 MOD 37,36 check character.

``1.2.156.3005.2.<type code>.<issuer code>.<serial>.<version>.<check>`` where the type code is
the defining authority's USCC plus a three-digit sequence (21 characters), the issuer code is
the issuing department's USCC (18), the serial is free-length ``0-9A-Z``, the version three
digits (``001``) and the check character is ISO 7064 MOD 37,36 (hybrid system) over the fields
after the prefix with the dots removed.

Parsing is strict (no case folding or width normalisation): identifiers are machine-made, and a
strict parser lets the check character catch every single-character change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from govtrust.errors import FieldViolation, InvalidArgument
from idp.identifiers import InvalidIdentifier, parse_uscc

PREFIX = "1.2.156.3005.2"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUES = {c: i for i, c in enumerate(ALPHABET)}
TYPE_CODE_LENGTH = 21
ISSUER_CODE_LENGTH = 18
VERSION_LENGTH = 3
MAX_SERIAL_LENGTH = 64
FIELD = "identifier"


class InvalidLicenceIdentifier(InvalidArgument):
    """A licence identifier (or one of its parts) is malformed; ``field`` names the part."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}", [FieldViolation(field, description)])
        self.field_name = field
        self.reason = "INVALID_LICENCE_IDENTIFIER"


# _STEP[p][char] is the next state of the MOD 37,36 recurrence (a table walk per character).
_STEP = [{c: (((p + v) % 36 or 36) * 2) % 37 for c, v in _VALUES.items()} for p in range(37)]


def mod37_36_check(data: str) -> str:
    """The ISO 7064 MOD 37,36 check character of ``data`` (characters ``0-9A-Z``).

    ``P=36; for c in s: r=(P+val(c))%36; P=((r or 36)*2)%37``; check = alphabet[(37-P)%36].
    """
    p = 36
    step = _STEP
    try:
        for char in data:
            p = step[p][char]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in 0-9A-Z") from None
    return ALPHABET[(37 - p) % 36]


@dataclass(frozen=True)
class LicenceIdentifier:
    """A valid licence identifier and its parts."""

    type_code: str
    issuer_code: str
    serial: str
    version: int
    check: str

    @property
    def defining_authority(self) -> str:
        """The USCC of the authority that defines the licence type (first 18 of the type code)."""
        return self.type_code[:18]

    @property
    def version_text(self) -> str:
        return f"{self.version:03d}"

    def __str__(self) -> str:
        return ".".join(
            (PREFIX, self.type_code, self.issuer_code, self.serial, self.version_text, self.check)
        )

    def with_version(self, version: int) -> LicenceIdentifier:
        """The identifier of another version of the same licence (new check character)."""
        return build_identifier(self.type_code, self.issuer_code, self.serial, version)


_SERIAL = re.compile(r"[0-9A-Z]+")
_USCC_FORM = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")


def _check_uscc(
    code: str, field: str, whose: str, allow_list: Iterable[str], check_uscc: bool
) -> None:
    if not check_uscc and _USCC_FORM.fullmatch(code):
        return  # form only (length, GB 32100 character set); see parse_identifier
    try:
        parse_uscc(code, field=field, allow_list=frozenset(allow_list))
    except InvalidIdentifier as exc:
        raise InvalidLicenceIdentifier(
            field, f"{whose} USCC invalid: {exc.violations[0].description}"
        ) from None


def check_type_code(value: str, allow_list: Iterable[str] = (), *, check_uscc: bool = True) -> None:
    """Validate a 21-character type code (defining authority USCC + 3 digits)."""
    field = f"{FIELD}.type_code"
    if len(value) != TYPE_CODE_LENGTH:
        raise InvalidLicenceIdentifier(
            field, f"must be {TYPE_CODE_LENGTH} characters (USCC + 3 digits), got {len(value)}"
        )
    if not (value[18:].isascii() and value[18:].isdigit()):
        raise InvalidLicenceIdentifier(field, "characters 19-21 must be a three-digit sequence")
    _check_uscc(value[:18], field, "defining authority", allow_list, check_uscc)


def _check_issuer_code(value: str, allow_list: Iterable[str], check_uscc: bool = True) -> None:
    field = f"{FIELD}.issuer_code"
    if len(value) != ISSUER_CODE_LENGTH:
        raise InvalidLicenceIdentifier(
            field, f"must be an {ISSUER_CODE_LENGTH}-character USCC, got {len(value)}"
        )
    _check_uscc(value, field, "issuing department", allow_list, check_uscc)


def _check_serial(value: str) -> None:
    field = f"{FIELD}.serial"
    if not value:
        raise InvalidLicenceIdentifier(field, "must not be empty")
    if len(value) > MAX_SERIAL_LENGTH:
        raise InvalidLicenceIdentifier(field, f"must be at most {MAX_SERIAL_LENGTH} characters")
    if _SERIAL.fullmatch(value):
        return
    for position, char in enumerate(value, start=1):
        if char not in _VALUES:
            raise InvalidLicenceIdentifier(
                field, f"position {position} must be a digit or upper-case letter A-Z"
            )


def _parse_version(value: str | int) -> int:
    field = f"{FIELD}.version"
    if isinstance(value, int):
        number = value
    elif len(value) != VERSION_LENGTH or not (value.isascii() and value.isdigit()):
        raise InvalidLicenceIdentifier(field, "must be three digits, e.g. 001")
    else:
        number = int(value)
    if not 1 <= number <= 999:
        raise InvalidLicenceIdentifier(field, "must be between 001 and 999")
    return number


def build_identifier(
    type_code: str,
    issuer_code: str,
    serial: str,
    version: int = 1,
    *,
    allow_list: Iterable[str] = frozenset(),
) -> LicenceIdentifier:
    """Validate the parts and compute the check character; raises :class:`InvalidArgument`."""
    check_type_code(type_code, allow_list)
    _check_issuer_code(issuer_code, allow_list)
    _check_serial(serial)
    number = _parse_version(version)
    check = mod37_36_check(f"{type_code}{issuer_code}{serial}{number:03d}")
    return LicenceIdentifier(type_code, issuer_code, serial, number, check)


def parse_identifier(
    value: str, *, allow_list: Iterable[str] = frozenset(), check_uscc: bool = True
) -> LicenceIdentifier:
    """Parse and validate an identifier; raises :class:`InvalidLicenceIdentifier` per part.

    ``check_uscc=False`` skips the GB 32100 check characters of the two USCCs (still checking
    their form and the identifier's own check character): for verifiers, where a signature
    vouches for codes that an issuer's allow-list accepted.
    """
    if not isinstance(value, str) or not value:
        raise InvalidLicenceIdentifier(FIELD, "must be a non-empty string")
    if not value.startswith(PREFIX + "."):
        raise InvalidLicenceIdentifier(f"{FIELD}.prefix", f"must start with {PREFIX}.")
    parts = value[len(PREFIX) + 1 :].split(".")
    if len(parts) != 5:
        raise InvalidLicenceIdentifier(
            FIELD,
            "must have five dot-separated parts after the prefix "
            f"(type code, issuer code, serial, version, check), got {len(parts)}",
        )
    type_code, issuer_code, serial, version_text, check = parts
    check_type_code(type_code, allow_list, check_uscc=check_uscc)
    _check_issuer_code(issuer_code, allow_list, check_uscc)
    _check_serial(serial)
    version = _parse_version(version_text)
    if len(check) != 1 or check not in _VALUES:
        raise InvalidLicenceIdentifier(f"{FIELD}.check", "must be one character 0-9A-Z")
    expected = mod37_36_check(f"{type_code}{issuer_code}{serial}{version_text}")
    if check != expected:
        raise InvalidLicenceIdentifier(
            f"{FIELD}.check", "does not match (ISO 7064 MOD 37,36 over the fields)"
        )
    return LicenceIdentifier(type_code, issuer_code, serial, version, check)


def is_valid_identifier(value: str, *, allow_list: Iterable[str] = frozenset()) -> bool:
    """True when ``value`` parses as a licence identifier."""
    try:
        parse_identifier(value, allow_list=allow_list)
    except InvalidArgument:
        return False
    return True
