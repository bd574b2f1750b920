"""Where a seal goes on a document, PDF or OFD: a position, an anchor text, or a riding seal.

Millimetres from the page's top-left corner, y down; pages 1-based (negative from the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seal.errors import InvalidSealRequest


@dataclass(frozen=True)
class Position:
    """Centre of the seal on ``page`` (1-based; negative from the end), mm from top-left."""

    page: int
    x_mm: float
    y_mm: float


@dataclass(frozen=True)
class Anchor:
    """Centre of the seal relative to the centre of a text found in the document."""

    text: str
    occurrence: int = 1  # 1-based; 0 = the last
    offset_x_mm: float = 0.0
    offset_y_mm: float = 0.0  # down positive


@dataclass(frozen=True)
class Riding:
    """A riding seal (骑缝章) across pages ``first_page``..``last_page`` (1-based; 0 = first or
    last)."""

    first_page: int = 0
    last_page: int = 0
    edge: str = "right"  # right | left
    y_mm: float = 0.0  # 0 = middle of the page


Placement = Position | Anchor | Riding | None


def page_index(page: int, count: int, field: str) -> int:
    """The 0-based index of ``page`` (1-based; negative from the end; 0: the first) in a
    document of ``count`` pages; InvalidSealRequest naming ``field`` when there is none."""
    index = page - 1 if page > 0 else count + page if page < 0 else 0
    if not 0 <= index < count:
        raise InvalidSealRequest.field(field, f"the document has {count} pages")
    return index


def anchor_occurrence(
    hits: Sequence[tuple[int, float, float]], text: str, occurrence: int
) -> tuple[int, float, float]:
    """The ``occurrence``-th (1-based; 0: the last) of the places an anchor ``text`` was found
    (page index, x, y); InvalidSealRequest when it is not there that often."""
    if not hits:
        raise InvalidSealRequest.field("placement.anchor.text", f"{text!r} is not in the document")
    if occurrence == 0:
        return hits[-1]
    if not 1 <= occurrence <= len(hits):
        raise InvalidSealRequest.field(
            "placement.anchor.occurrence", f"the text occurs {len(hits)} times"
        )
    return hits[occurrence - 1]


def riding_pages(riding: Riding, count: int) -> range:
    """The page indexes a riding seal spans (two or more), its edge checked."""
    first = page_index(riding.first_page or 1, count, "placement.riding.first_page")
    last = page_index(riding.last_page or count, count, "placement.riding.last_page")
    if last <= first:
        raise InvalidSealRequest.field("placement.riding", "a riding seal spans two pages or more")
    if riding.edge not in ("right", "left"):
        raise InvalidSealRequest.field("placement.riding.edge", "right or left")
    return range(first, last + 1)
