"""Where everything goes on a licence page: pure geometry and text, no file format.

:func:`lay_out` resolves the licence type's layout and places the frame, the two QR codes, the
title, the fields, the issuer and the footer as :class:`Text`, :class:`Rect` and
:class:`QrCode` items in millimetres from the page's top-left corner; a writer draws them
(:mod:`license.pdf_writer`). Text is measured in the licence font (:mod:`license.fonts`).

Layout (``LicenceType.layout``, every key optional)::

    {"page": "A4-landscape" | "A4-portrait" | [width_mm, height_mm],
     "title": "营业执照",                          # default: the type's name
     "rows": [["KZ_TYSHXYDM"], ["KZ_MC", "KZ_ZCZB"], ...],   # one or two fields per row
     "seal": "bottom-right" | "bottom-left" | {"x_mm": 230, "y_mm": 170},  # seal centre
     "qr": "top-right" | "top-left" | "bottom-left" | "bottom-right",     # verification URL
     "offline_qr": same corners}                   # default: the bottom corner without the seal

Fields present in the licence but in no row follow, one per row. Values wrap inside their
cell; when the rows do not fit, the value size shrinks (down to 7 pt) and then the longest
values are cut with "…" (the signed data always holds the full text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from license.catalogue import LicenceType
from license.fonts import licence_font
from license.signed_data import LONG_TERM, LicenceMetadata

PT_PER_MM = 72 / 25.4
_PAGES = {"A4-landscape": (297.0, 210.0), "A4-portrait": (210.0, 297.0)}
_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
_FRAME = (0.62, 0.16, 0.12)  # border colour (RGB)
_LABEL = (0.25, 0.25, 0.25)
_NO_LINE_START = frozenset("，。、；：？！）》」』】〕”’…,.;:?!)]}%")  # hang at the line end

Colour = tuple[float, float, float]
"""RGB, each 0-1."""


@dataclass(frozen=True)
class DocumentInput:
    """What a licence document shows and embeds."""

    licence_type: LicenceType
    metadata: LicenceMetadata
    signed_data: str
    qr_payload: str
    verify_url: str


# --- text ---------------------------------------------------------------------------------------


def text_width(text: str, size: float) -> float:
    """Width of ``text`` at ``size`` points, in points."""
    font = licence_font()
    return font.width(text) * size


def wrap(text: str, size: float, width: float) -> list[str]:
    """Lines of ``text`` no wider than ``width`` points (CJK breaks anywhere; explicit newlines
    are kept; a Latin word is not split when it fits on the next line)."""
    font = licence_font()
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for char in paragraph:
            advance = font.char_advance(char) * size
            hang = char in _NO_LINE_START and used <= width  # one punctuation mark may hang
            if line and used + advance > width and not hang:
                cut = len(line)
                if char.isascii() and char.isalnum():
                    space = line.rfind(" ")
                    if space > 0 and all(c.isascii() for c in line[space:]):
                        cut = space + 1
                lines.append(line[:cut].rstrip())
                line = line[cut:]
                used = text_width(line, size)
            line += char
            used += advance
        lines.append(line.rstrip())
    return lines


# --- items --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """One line of text; ``x_mm`` is its left edge, centre or right edge by ``align``
    (``left``, ``centre``, ``right``); ``spacing`` is extra space between characters (pt)."""

    text: str
    x_mm: float
    baseline_mm: float
    size: float
    colour: Colour = (0, 0, 0)
    spacing: float = 0.0
    align: str = "left"


@dataclass(frozen=True)
class Rect:
    """A stroked rectangle (top-left corner, size; ``line`` width in pt)."""

    x_mm: float
    y_mm: float
    w_mm: float
    h_mm: float
    line: float
    colour: Colour


@dataclass(frozen=True)
class QrCode:
    """A QR code of ``data`` (with its quiet zone) filling a square of ``size_mm`` at (x, y)."""

    data: str
    x_mm: float
    y_mm: float
    size_mm: float
    alphanumeric: bool


Item = Text | Rect | QrCode


@dataclass
class _Items:
    """The items placed so far, in drawing order."""

    items: list[Item] = field(default_factory=list)

    def text(
        self,
        text: str,
        x_mm: float,
        baseline_mm: float,
        size: float,
        *,
        colour: Colour = (0, 0, 0),
        spacing: float = 0.0,
        align: str = "left",
    ) -> None:
        self.items.append(Text(text, x_mm, baseline_mm, size, colour, spacing, align))

    def rect(
        self, x_mm: float, y_mm: float, w_mm: float, h_mm: float, line: float, colour: Colour
    ) -> None:
        self.items.append(Rect(x_mm, y_mm, w_mm, h_mm, line, colour))

    def qr(
        self, data: str, x_mm: float, y_mm: float, size_mm: float, *, alphanumeric: bool
    ) -> None:
        self.items.append(QrCode(data, x_mm, y_mm, size_mm, alphanumeric))


# --- the page -----------------------------------------------------------------------------------


_Cell = tuple[float, float, str, list[str]]  # x, value x, field name, lines


@dataclass(frozen=True)
class PageLayout:
    """A licence type's layout resolved against defaults (mm, from the page's top-left)."""

    width_mm: float
    height_mm: float
    title: str
    rows: tuple[tuple[str, ...], ...]
    seal_centre: tuple[float, float]
    qr_corner: str
    offline_corner: str


@dataclass(frozen=True)
class Page:
    """A laid-out licence page: the resolved layout and the items to draw, in order."""

    layout: PageLayout
    items: tuple[Item, ...]


def resolve_layout(
    licence_type: LicenceType, fields: Mapping[str, str], seal_mm: float
) -> PageLayout:
    """The layout of ``licence_type`` with defaults for every missing or unusable key."""
    spec: Mapping[str, Any] = licence_type.layout
    if not isinstance(spec, Mapping):
        spec = {}
    page = spec.get("page", "A4-landscape")
    if (
        isinstance(page, list | tuple)
        and len(page) == 2
        and all(isinstance(v, int | float) for v in page)
    ):
        width, height = float(page[0]), float(page[1])
        if not (100 <= width <= 600 and 100 <= height <= 600):
            width, height = _PAGES["A4-landscape"]
    else:
        width, height = _PAGES.get(str(page), _PAGES["A4-landscape"])
    title = str(spec.get("title") or licence_type.name)
    rows: list[tuple[str, ...]] = []
    placed: set[str] = set()
    raw_rows = spec.get("rows")
    for row in raw_rows if isinstance(raw_rows, list) else []:
        names = tuple(n for n in (row if isinstance(row, list) else [row]) if isinstance(n, str))
        names = tuple(n for n in names if n in fields and n not in placed)[:2]
        if names:
            rows.append(names)
            placed.update(names)
    order = [f.name for f in licence_type.fields] + sorted(fields)
    for name in order:
        if name in fields and name not in placed:
            rows.append((name,))
            placed.add(name)
    margin = 12.0
    seal = spec.get("seal", "bottom-right")
    seal_corner = seal if seal in ("bottom-left", "bottom-right") else "bottom-right"
    half = seal_mm / 2
    centre_y = height - margin - 10 - half
    centre_x = width - margin - 22 - half if seal_corner == "bottom-right" else margin + 22 + half
    if isinstance(seal, Mapping):
        try:
            cx, cy = float(seal["x_mm"]), float(seal["y_mm"])
        except (KeyError, TypeError, ValueError):
            cx, cy = centre_x, centre_y
        if half <= cx <= width - half and half <= cy <= height - half:
            centre_x, centre_y = cx, cy
            seal_corner = "bottom-right" if cx > width / 2 else "bottom-left"
    qr_corner = spec.get("qr", "top-right")
    if qr_corner not in _CORNERS:
        qr_corner = "top-right"
    other_bottom = "bottom-left" if seal_corner == "bottom-right" else "bottom-right"
    offline = spec.get("offline_qr", other_bottom)
    if offline not in _CORNERS or offline == qr_corner:
        offline = other_bottom if qr_corner != other_bottom else "top-left"
    return PageLayout(width, height, title, tuple(rows), (centre_x, centre_y), qr_corner, offline)


def _chinese_date(value: date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"


def lay_out(doc: DocumentInput, seal_mm: float) -> Page:
    """The page of ``doc``: its type's layout resolved (a seal ``seal_mm`` across) and every
    frame, QR code and line of text placed, in drawing order. The seal area is left blank."""
    meta = doc.metadata
    lay = resolve_layout(doc.licence_type, meta.fields, seal_mm)
    page = _Items()
    w, h = lay.width_mm, lay.height_mm
    margin = 12.0
    page.rect(margin, margin, w - 2 * margin, h - 2 * margin, 2.2, _FRAME)
    page.rect(margin + 2.2, margin + 2.2, w - 2 * margin - 4.4, h - 2 * margin - 4.4, 0.6, _FRAME)

    # QR codes: the verification URL (28 mm) and the offline payload (38 mm), each with a caption
    boxes: dict[str, tuple[float, float, float]] = {}
    for corner, size in ((lay.qr_corner, 28.0), (lay.offline_corner, 38.0)):
        x = margin + 8 if corner.endswith("left") else w - margin - 8 - size
        y = margin + 8 if corner.startswith("top") else h - margin - 14 - size
        if (
            corner == lay.offline_corner
            and lay.offline_corner == "top-left"
            and lay.qr_corner.endswith("left")
        ):
            x += 32
        boxes[corner] = (x, y, size)
    x, y, size = boxes[lay.qr_corner]
    page.qr(doc.verify_url, x, y, size, alphanumeric=False)
    page.text("扫码核验", x + size / 2, y + size + 4.2, 8, colour=_LABEL, align="centre")
    x, y, size = boxes[lay.offline_corner]
    page.qr(doc.qr_payload, x, y, size, alphanumeric=True)
    page.text("离线核验码", x + size / 2, y + size + 4.2, 8, colour=_LABEL, align="centre")

    # title and number
    title_size = 30.0 if len(lay.title) <= 6 else 24.0
    spread = 0.6 if len(lay.title) <= 6 else 0.15
    room = (w - 2 * (margin + 50)) * PT_PER_MM  # clear of the corner QR codes
    natural = text_width(lay.title, 1.0) + spread * (len(lay.title) - 1)
    title_size = min(title_size, room / natural) if natural else title_size
    page.text(
        lay.title, w / 2, margin + 28, title_size, spacing=title_size * spread, align="centre"
    )
    page.text(f"编号：{meta.number}", w / 2, margin + 37, 9, colour=_LABEL, align="centre")

    # fields
    top = margin + 46
    if lay.qr_corner.startswith("top") or lay.offline_corner.startswith("top"):
        top = max(top, margin + 8 + 28 + 8)
    bottom_items = [boxes[c][1] for c in boxes if c.startswith("bottom")]
    bottom = min([lay.seal_centre[1] - 16, *bottom_items]) - 6
    left, right = margin + 14, w - margin - 14
    _fields(page, doc, lay, left, right, top, bottom)

    # issuer and date under the seal; validity and identifier along the bottom
    cx, cy = lay.seal_centre
    page.text(meta.issuer_name, cx, cy + 4, 11, align="centre")
    page.text(_chinese_date(meta.issue_date), cx, cy + 11, 11, align="centre")
    until = meta.valid_until.isoformat() if meta.valid_until else LONG_TERM
    footer_x = w / 2
    page.text(
        f"有效期：{meta.valid_from.isoformat()} 至 {until}",
        footer_x,
        h - margin - 12,
        8.5,
        colour=_LABEL,
        align="centre",
    )
    page.text(
        f"证照标识：{meta.identifier}", footer_x, h - margin - 7, 7, colour=_LABEL, align="centre"
    )
    page.text(
        f"持证主体代码：{meta.holder_code}",
        footer_x,
        h - margin - 17,
        8.5,
        colour=_LABEL,
        align="centre",
    )
    return Page(lay, tuple(page.items))


def _fields(
    page: _Items,
    doc: DocumentInput,
    lay: PageLayout,
    left: float,
    right: float,
    top: float,
    bottom: float,
) -> None:
    """The field rows between ``top`` and ``bottom`` (mm): labels in a column of their own
    width, values wrapped beside them; shrunk, then cut with "…", when they do not fit."""
    meta = doc.metadata
    values = dict(meta.fields)
    rows = list(lay.rows)
    if meta.holder_name not in values.values():
        values["CZZT"] = meta.holder_name
        rows.insert(0, ("CZZT",))

    def label(name: str) -> str:
        if name == "CZZT":
            return "持证主体"
        spec = doc.licence_type.field_spec(name)
        return spec.label if spec is not None else name

    gap = 8.0
    column_w = (right - left - gap) / 2

    def cells(size: float) -> list[list[_Cell]]:
        label_w = [0.0, 0.0]
        for row in rows:
            for i, name in enumerate(row):
                label_w[i] = max(label_w[i], text_width(label(name), size) / PT_PER_MM + size / 3)
        out = []
        for row in rows:
            width = right - left if len(row) == 1 else column_w
            cell_row = []
            for i, name in enumerate(row):
                x = left + i * (column_w + gap)
                lines = wrap(values[name], size, (width - label_w[i]) * PT_PER_MM)
                cell_row.append((x, x + label_w[i], name, lines))
            out.append(cell_row)
        return out

    def lines_of(layout: list[list[_Cell]]) -> int:
        return sum(max(len(c[3]) for c in row) for row in layout)

    row_gap = 2.0
    size = 12.0
    layout = cells(size)
    while lines_of(layout) * size * 1.45 / PT_PER_MM + len(layout) * row_gap > bottom - top:
        if size <= 7.0:
            break
        size -= 0.5
        layout = cells(size)
    line_h = size * 1.45 / PT_PER_MM
    budget = int((bottom - top - len(layout) * row_gap) / line_h)
    while lines_of(layout) > budget:  # cut the tallest cell by one line at a time
        row = max(layout, key=lambda r: max(len(c[3]) for c in r))
        tallest = max(row, key=lambda c: len(c[3]))
        if len(tallest[3]) <= 1:
            break
        kept = tallest[3][:-1]
        kept[-1] = kept[-1][:-1] + "…"
        row[row.index(tallest)] = (*tallest[:3], kept)
    spare = bottom - top - lines_of(layout) * line_h - len(layout) * row_gap
    row_gap += min(max(spare, 0.0) / max(len(layout), 1), 6.0)
    y = top
    for row in layout:
        for x, value_x, name, lines in row:
            baseline = y + size * 0.95 / PT_PER_MM
            page.text(label(name), x, baseline, size, colour=_LABEL)
            for i, line in enumerate(lines):
                page.text(line, value_x, baseline + i * line_h, size)
        y += max(len(c[3]) for c in row) * line_h + row_gap
