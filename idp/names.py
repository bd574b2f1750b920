"""Names, e-mail addresses and phone numbers: normalisation and validation."""

from __future__ import annotations

import re
import unicodedata

from govtrust.errors import FieldViolation
from idp.models import EMAIL_LENGTH, NAME_LENGTH

_SPACES = re.compile(r"\s+")
_REFUSED = frozenset({"Cc", "Cf", "Co", "Cs"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")


def clean_name(value: str) -> str:
    """NFKC, trimmed, inner white space collapsed to one space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip()


def name_key(value: str) -> str:
    """The form names are compared and searched in: cleaned and case-folded."""
    return clean_name(value).casefold()


def name_violation(field: str, value: str, *, required: bool = True) -> FieldViolation | None:
    """Why ``value`` is not an acceptable name, or None."""
    name = clean_name(value)
    if not name:
        return FieldViolation(field, "required") if required else None
    if len(name) > NAME_LENGTH:
        return FieldViolation(field, f"length: at most {NAME_LENGTH} characters")
    # isprintable() is a fast C check; it also rejects unassigned code points, which a newer
    # CJK extension may still be to this Python, so only the categories below are refused.
    if not name.isprintable() and any(unicodedata.category(c) in _REFUSED for c in name):
        return FieldViolation(field, "character not allowed: control or format character")
    return None


def clean_phone(value: str) -> str:
    """Separators removed and a +86 / 0086 prefix dropped; empty stays empty."""
    phone = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", value))
    for prefix in ("+86", "0086"):
        if phone.startswith(prefix):
            phone = phone[len(prefix) :]
    return phone


def phone_violation(field: str, value: str) -> FieldViolation | None:
    """Why ``value`` is not a mainland mobile number, or None (empty is allowed)."""
    phone = clean_phone(value)
    if phone and not _MOBILE.match(phone):
        return FieldViolation(field, "not a mainland mobile number (11 digits starting with 1)")
    return None


def email_violation(field: str, value: str) -> FieldViolation | None:
    """Why ``value`` is not an e-mail address, or None (empty is allowed)."""
    email = value.strip()
    if not email:
        return None
    if len(email) > EMAIL_LENGTH:
        return FieldViolation(field, f"length: at most {EMAIL_LENGTH} characters")
    if not _EMAIL.match(email):
        return FieldViolation(field, "not an e-mail address")
    return None
