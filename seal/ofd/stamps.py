"""Where a seal's picture shows on an OFD document: :class:`~seal.placement.Placement` →
``StampAnnot`` elements (GB/T 33190 §18.2.3).

A position or an anchor text gives one StampAnnot whose ``Boundary`` is the seal's box centred
there. A riding seal (骑缝章) gives one per page spanned: the whole seal's box placed so that the
page's slice lies on the chosen edge, and a ``Clip`` showing only that slice (slice *i* of *n*
on the *i*-th page, as the PDF riding seal and ofdrw cut it). No placement: no StampAnnot (an
invisible seal).

Anchor texts are found in the text objects read by :mod:`seal.ofd.reader`, one ``TextCode`` at a
time; a glyph's advance is its ``DeltaX`` or, where a producer left it out, the font size for a
wide (CJK) character and half of it otherwise.
"""

from __future__ import annotations

import unicodedata

from seal.errors import InvalidSealRequest
from seal.ofd.model import Box, Text
from seal.ofd.reader import OfdContents
from seal.ofd.signatures import StampAnnot
from seal.placement import (
    Anchor,
    Placement,
    Position,
    Riding,
    anchor_occurrence,
    page_index,
    riding_pages,
)

_BASELINE_TO_MIDDLE = 0.35
"""The middle of a line of glyphs above its baseline, as a fraction of the font size."""


def _advance(character: str, size: float) -> float:
    wide = unicodedata.east_asian_width(character) in ("W", "F")
    return size if wide else size / 2


def _centre(text: Text, start: int, length: int) -> tuple[float, float]:
    """The page position (mm) of the middle of ``text.text[start:start + length]``."""
    advances = [
        text.delta_x[i] if i < len(text.delta_x) else _advance(text.text[i], text.size)
        for i in range(start + length)
    ]
    left = text.boundary.x + text.x + sum(advances[:start])
    last = start + length - 1
    right = left + sum(advances[start:last]) + _advance(text.text[last], text.size)
    middle_y = text.boundary.y + text.y - text.size * _BASELINE_TO_MIDDLE
    return (left + right) / 2, middle_y


def find_text(contents: OfdContents, text: str, occurrence: int) -> tuple[int, float, float]:
    """(page index, x, y) in mm of the centre of an occurrence of ``text`` (1-based; 0: the
    last); InvalidSealRequest when it is not there that often."""
    needle = text.strip()
    if not needle:
        raise InvalidSealRequest.field("placement.anchor.text", "required")
    hits: list[tuple[int, float, float]] = []
    for index, page in enumerate(contents.document.pages):
        for thing in page.objects:
            if not isinstance(thing, Text):
                continue
            at = thing.text.find(needle)
            while at >= 0:
                hits.append((index, *_centre(thing, at, len(needle))))
                at = thing.text.find(needle, at + 1)
    return anchor_occurrence(hits, text, occurrence)


def stamp_annots(
    contents: OfdContents,
    placement: Placement,
    width: float,
    height: float,
    first_id: int,
) -> tuple[StampAnnot, ...]:
    """The StampAnnots showing a ``width`` × ``height`` mm seal at ``placement``, numbered from
    ``first_id``."""
    count = len(contents.page_ids)
    if placement is None:
        return ()
    if isinstance(placement, Position | Anchor):
        if isinstance(placement, Position):
            index = page_index(placement.page or 1, count, "placement.position.page")
            cx, cy = placement.x_mm, placement.y_mm
        else:
            index, ax, ay = find_text(contents, placement.text, placement.occurrence)
            cx, cy = ax + placement.offset_x_mm, ay + placement.offset_y_mm
        box = Box(cx - width / 2, cy - height / 2, width, height)
        return (StampAnnot(first_id, contents.page_ids[index], box),)
    assert isinstance(placement, Riding)
    spanned = riding_pages(placement, count)
    slice_width = width / len(spanned)
    page_width = contents.document.page_width
    page_height = contents.document.page_height
    top = (placement.y_mm or page_height / 2) - height / 2
    annots = []
    for i, index in enumerate(spanned):
        shown = i * slice_width
        left = page_width - slice_width - shown if placement.edge == "right" else -shown
        annots.append(
            StampAnnot(
                first_id + i,
                contents.page_ids[index],
                Box(left, top, width, height),
                clip=Box(shown, 0, slice_width, height),
            )
        )
    return tuple(annots)
