"""Valid identity numbers for tests."""

from __future__ import annotations

from idp.identifiers import resident_id_check_digit, uscc_check_char


def resident_id(n: int, *, birth: str = "19800101", region: str = "350102") -> str:
    """The ``n``-th valid resident ID number (distinct for distinct ``n`` < 1000 per date)."""
    first17 = f"{region}{birth}{n % 1000:03d}"
    return first17 + resident_id_check_digit(first17)


def uscc(n: int, *, prefix: str = "91", region: str = "350100") -> str:
    """The ``n``-th valid USCC."""
    first17 = f"{prefix}{region}MA{n:07d}"
    return first17 + uscc_check_char(first17)
