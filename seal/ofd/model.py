"""The OFD document model: what :mod:`seal.ofd.writer` writes and :mod:`seal.ofd.reader` reads.

Units are millimetres; page coordinates start at the top-left corner, y down (GB/T 33190).
Objects refer to their font or image directly; the writer numbers every unit (font, image,
page, layer, object) once, from 1, and records the last number as ``MaxUnitID``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Colour = tuple[int, int, int]
"""An RGB colour, 0–255 per component."""

BLACK: Colour = (0, 0, 0)


@dataclass(frozen=True)
class Box:
    """A rectangle: the top-left corner and the size (``Boundary``/``PhysicalBox``, mm)."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Font:
    """An embedded font file (``FontFile``) and its names; empty ``data``: a system font, not
    embedded."""

    name: str
    family: str
    data: bytes = field(repr=False)
    kind: Literal["ttf", "otf"] = "ttf"


@dataclass(frozen=True)
class Image:
    """An embedded image (a ``MultiMedia`` of type Image); ``format`` as OFD names it (PNG, JPEG,
    or what a read package declares: BMP, GIF, JB2, TIFF …)."""

    data: bytes = field(repr=False)
    format: str = "PNG"


@dataclass(frozen=True)
class Text:
    """A ``TextObject`` with one ``TextCode``: ``x``/``y`` is the first glyph's origin (baseline)
    relative to ``boundary``; ``delta_x`` the advances between consecutive characters."""

    boundary: Box
    font: Font
    size: float
    text: str
    x: float
    y: float
    delta_x: tuple[float, ...] = ()
    fill: Colour = BLACK


@dataclass(frozen=True)
class Path:
    """A ``PathObject``: ``data`` is the ``AbbreviatedData`` (M, L, C … in mm relative to
    ``boundary``); filled with ``fill`` and/or stroked with ``stroke`` when given."""

    boundary: Box
    data: str
    fill: Colour | None = BLACK
    stroke: Colour | None = None
    line_width: float = 0.353


@dataclass(frozen=True)
class ImagePlacement:
    """An ``ImageObject`` drawing ``image`` scaled to ``boundary``."""

    boundary: Box
    image: Image


GraphicObject = Text | Path | ImagePlacement


@dataclass(frozen=True)
class Page:
    """One page: its objects, drawn in order on one body layer."""

    objects: tuple[GraphicObject, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """A file attached to the document (``Attachments``, GB/T 33190 §20): its name, the file
    format named (e.g. ``jws``, ``txt``) and its bytes; not shown on a page."""

    name: str
    format: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class DocumentInfo:
    """``DocInfo``: identifier, creation date (``YYYY-MM-DD``), creator, custom data in order."""

    doc_id: str
    creation_date: str
    creator: str = ""
    custom_data: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Document:
    """An OFD document of one page size; fonts and images are listed in resource order."""

    info: DocumentInfo
    page_width: float
    page_height: float
    pages: tuple[Page, ...]
    fonts: tuple[Font, ...] = ()
    images: tuple[Image, ...] = ()
    attachments: tuple[Attachment, ...] = ()


def rectangles(squares: Iterable[tuple[float, float, float, float]]) -> str:
    """``AbbreviatedData`` drawing each (x, y, width, height) as a closed rectangle (QR modules)."""
    parts = []
    for x, y, width, height in squares:
        x1, y1 = number(x + width), number(y + height)
        x0, y0 = number(x), number(y)
        parts.append(f"M {x0} {y0} L {x1} {y0} L {x1} {y1} L {x0} {y1} C")
    return " ".join(parts)


def grid_rectangles(runs: Iterable[tuple[int, int, int]], cell: float, cells: int) -> str:
    """:func:`rectangles` of runs of grid cells (row, first column, column after the last) on a
    grid of ``cells`` × ``cells`` squares of side ``cell`` (QR modules): each grid line's
    coordinate is formatted once, not once per rectangle corner."""
    at = [number(i * cell) for i in range(cells + 1)]
    return " ".join(
        f"M {at[c0]} {at[r]} L {at[c1]} {at[r]} L {at[c1]} {at[r + 1]} L {at[c0]} {at[r + 1]} C"
        for r, c0, c1 in runs
    )


@functools.lru_cache(maxsize=8192)
def number(value: float) -> str:
    """``value`` to 0.001 mm, without trailing zeros (``12.5``, ``3``, ``-0.25``); remembered
    (a page writes the same advances and grid lines again and again)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
