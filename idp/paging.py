"""Page tokens of the identity listings (registry search, agent grants, service identities).

A token carries the position after the last item of a page (keyset paging) and a fingerprint
of the query's filters, so a token is refused when the filters change between pages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable

from govtrust.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def checked_page_size(value: int) -> int:
    """The page size to use for a requested ``page_size`` (0 for the default, capped at
    :data:`MAX_PAGE_SIZE`); ``InvalidArgument`` when negative."""
    if value < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(filters: Iterable[object]) -> str:
    return hashlib.sha256(json.dumps([str(f) for f in filters]).encode()).hexdigest()[:16]


def page_token_for(filters: Iterable[object], *position: str) -> str:
    """The token of the page after ``position`` (the last item's sort key) under ``filters``."""
    body = json.dumps({"f": _fingerprint(filters), "p": list(position)}).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def page_position(token: str, filters: Iterable[object], size: int) -> list[str] | None:
    """The position (``size`` strings) a token of a previous page of this query carries; None
    for no token (the first page); ``InvalidArgument`` on ``page_token`` for any other."""
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = body["p"]
        valid = body["f"] == _fingerprint(filters) and len(position) == size
    except (ValueError, KeyError, TypeError, binascii.Error):
        valid = False
    if not valid or not all(isinstance(p, str) for p in position):
        raise InvalidArgument.field(
            "page_token", "not a token of a previous page of this query (filters must not change)"
        )
    return [str(p) for p in position]
