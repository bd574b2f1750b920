"""Page tokens of the seal listings (an opaque offset)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TypeVar

from govtrust.errors import InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 500
T = TypeVar("T")


def paging(page_size: int, page_token: str) -> tuple[int, int]:
    """The page size and offset a request asks for; InvalidArgument on a bad size or token."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    offset = 0
    if page_token:
        try:
            offset = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument.field("page_token", "not a token this service issued") from None
    return size, offset


def token_for(offset: int) -> str:
    """The page token of ``offset``."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def page(items: list[T], page_size: int, page_token: str) -> tuple[list[T], str]:
    """One page of an in-memory list, and the next page's token ('' on the last page)."""
    size, offset = paging(page_size, page_token)
    chunk = items[offset : offset + size]
    return chunk, token_for(offset + size) if len(items) > offset + size else ""


def keyset_token(moment: datetime, row_id: str) -> str:
    """The page token that continues a newest-first listing after the row (``moment``, ``id``)."""
    return base64.urlsafe_b64encode(f"k:{moment.isoformat()}|{row_id}".encode()).decode()


def keyset(page_size: int, page_token: str) -> tuple[int, tuple[datetime, str] | None, int]:
    """The page size and where a newest-first listing continues: after a (moment, id) key
    (a :func:`keyset_token`), or at an offset (an older :func:`token_for` token, still
    honoured); InvalidArgument on a bad size or token."""
    if page_token:
        try:
            text = base64.urlsafe_b64decode(page_token.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument.field("page_token", "not a token this service issued") from None
        if text.startswith("k:"):
            size, _ = paging(page_size, "")
            moment, _, row_id = text[2:].partition("|")
            try:
                return size, (datetime.fromisoformat(moment), row_id), 0
            except ValueError:
                raise InvalidArgument.field(
                    "page_token", "not a token this service issued"
                ) from None
    size, offset = paging(page_size, page_token)
    return size, None, offset
