"""Valid identity numbers for tests, made with a test-only check-character implementation.

The check characters here are computed independently of :mod:`idp.identifiers` (the code under
test): ISO 7064 MOD 11-2 in its recursive form (``p = (p + digit) * 2 mod 11``) rather than the
weight table, and the GB 32100 check from weights built by repeated multiplication rather than
``pow``. A bug in the production tables therefore makes the generated numbers fail to parse
instead of agreeing with it.
"""

from __future__ import annotations

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015 §4: no I, O, S, V, Z


def mod11_2(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of ``first17`` (digits), written from the standard."""
    p = 0
    for char in first17:
        p = ((p + int(char)) * 2) % 11
    value = (12 - p) % 11
    return "X" if value == 10 else str(value)


def gb32100_check(first17: str) -> str:
    """GB 32100-2015 check character: weights 3^i mod 31, C18 = 31 - (sum mod 31)."""
    total = 0
    weight = 1
    for char in first17:
        total += _USCC_ALPHABET.index(char) * weight
        weight = weight * 3 % 31
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def resident_id(n: int, *, birth: str = "19800101", region: str = "350102") -> str:
    """The ``n``-th valid resident ID number (distinct for distinct ``n`` < 1000 per date)."""
    first17 = f"{region}{birth}{n % 1000:03d}"
    return first17 + mod11_2(first17)


def uscc(n: int, *, prefix: str = "91", region: str = "350100") -> str:
    """The ``n``-th valid USCC."""
    first17 = f"{prefix}{region}MA{n:07d}"
    return first17 + gb32100_check(first17)
