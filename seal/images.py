"""Seal pictures: one layout per kind, rendered to PNG (Pillow), to PDF content and to SVG.

A :class:`SealDesign` (kind, name, texts, size) is laid out once into primitives in millimetres
with the origin at the seal's centre and y pointing up — rings, a five-pointed star and glyphs
placed with a rotation — and the same primitives are drawn by three back ends:

* :func:`render_png` — Pillow, supersampled, red ink on a transparent background at a DPI;
* :func:`pdf_content` — a PDF content stream (vector: glyph outlines from the seal font via
  fontTools, so the seal needs no embedded font and looks the same in every viewer);
* :func:`render_svg` — the same paths as SVG.

The face is a Song face (宋体) as on official seals: Noto Serif CJK SC Bold from Debian's
fonts-noto-cjk (:data:`SEAL_FONT`). Arced text is laid out by advance widths, each glyph's box
(:func:`glyph_corners`) in its own wedge from the centre with an even gap; a name too long for
its span is narrowed, then made smaller, as seals are cut (:func:`_arc`).

Appearance follows the rules in STANDARDS.md: official and specialised seals are round (40–45 mm),
red, with a five-pointed star in the centre and the owner's name arced left to right along the
top, the kind text below the star; the invoice seal (发票专用章) is an oval 40×30 mm with the
taxpayer number across the centre; the personal-name seal (个人名章) is square, the name in two
columns read right to left.
"""

from __future__ import annotations

import functools
import io
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFont

from seal.errors import InvalidSealRequest
from seal.types import SealKind, SealShape

SEAL_FONT = "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc"
"""The seal face: Noto Serif CJK SC Bold, a Song (宋体) face, from Debian's fonts-noto-cjk."""
SEAL_FONT_FAMILY = "Noto Serif CJK SC"
SEAL_FONT_PACKAGE = "fonts-noto-cjk"
INK = (218, 0, 0)
"""Seal red (RGB)."""
PT_PER_MM = 72 / 25.4
_KAPPA = 0.5522847498
MARGIN_MM = 0.3
"""Least clearance between a glyph's box and the inner edge of the ring, and between two glyphs."""


class SealFontMissing(RuntimeError):
    """The seal face's font file is not installed (a deployment error, not a request error)."""


@functools.lru_cache(maxsize=1)
def seal_font() -> tuple[str, int]:
    """(path, face index) of the Simplified Chinese face in :data:`SEAL_FONT`."""
    from fontTools.ttLib import TTCollection  # type: ignore[import-untyped]

    if not os.path.isfile(SEAL_FONT):
        raise SealFontMissing(
            f"the seal font {SEAL_FONT} is missing: install the Debian package "
            f"{SEAL_FONT_PACKAGE} (scripts/system-deps.sh run)"
        )
    with TTCollection(SEAL_FONT, lazy=True) as collection:
        for index, face in enumerate(collection.fonts):
            if face["name"].getDebugName(1) == SEAL_FONT_FAMILY:
                return SEAL_FONT, index
    raise SealFontMissing(f"{SEAL_FONT} has no {SEAL_FONT_FAMILY} face")


# --- design and layout ---------------------------------------------------------------------


@dataclass(frozen=True)
class SealDesign:
    """What a seal shows. ``width_mm``/``height_mm`` of 0 take the kind's usual size."""

    kind: SealKind
    name: str
    business_number: str = ""
    taxpayer_number: str = ""
    code: str = ""  # the seal code printed small along the bottom (round seals), optional
    shape: SealShape | None = None
    width_mm: int = 0
    height_mm: int = 0

    def resolved_shape(self) -> SealShape:
        """The shape, defaulting per kind."""
        if self.shape is not None:
            return self.shape
        if self.kind is SealKind.INVOICE:
            return SealShape.OVAL
        if self.kind is SealKind.PERSONAL_NAME:
            return SealShape.SQUARE
        return SealShape.ROUND

    def size_mm(self) -> tuple[int, int]:
        """(width, height) in millimetres, validated against the kind's rules."""
        shape = self.resolved_shape()
        default = {
            SealShape.ROUND: (42, 42),
            SealShape.OVAL: (40, 30),
            SealShape.SQUARE: (20, 20),
            SealShape.RECTANGLE: (24, 12),
        }[shape]
        width = self.width_mm or default[0]
        height = self.height_mm or default[1]
        if shape is SealShape.ROUND:
            height = width
            low, high = (40, 45) if self.kind is SealKind.OFFICIAL else (30, 45)
            if not low <= width <= high:
                raise InvalidSealRequest.field(
                    "width_mm", f"a round {self.kind.value} seal is {low}-{high} mm across"
                )
        elif not (8 <= width <= 60 and 8 <= height <= 60):
            raise InvalidSealRequest.field("width_mm", "seal sides must be 8-60 mm")
        return width, height


@dataclass(frozen=True)
class Ring:
    """An elliptical ring: centre radii ``rx``/``ry`` and stroke ``width`` (mm)."""

    rx: float
    ry: float
    width: float


@dataclass(frozen=True)
class Frame:
    """A rectangular border centred on the origin."""

    half_w: float
    half_h: float
    width: float


@dataclass(frozen=True)
class Star:
    """A filled five-pointed star centred at (x, y), point up."""

    x: float
    y: float
    radius: float

    def points(self) -> list[tuple[float, float]]:
        """The ten vertices, outer and inner alternating, counter-clockwise from the top."""
        inner = self.radius * math.sin(math.radians(18)) / math.sin(math.radians(126))
        result = []
        for i in range(10):
            r = self.radius if i % 2 == 0 else inner
            angle = math.radians(90 + 36 * i)
            result.append((self.x + r * math.cos(angle), self.y + r * math.sin(angle)))
        return result


@dataclass(frozen=True)
class Glyph:
    """One character: em size ``size`` (mm), centred at (x, y), rotated ``angle`` degrees
    counter-clockwise, horizontally scaled by ``x_scale``."""

    char: str
    x: float
    y: float
    size: float
    angle: float = 0.0
    x_scale: float = 1.0


@dataclass(frozen=True)
class Layout:
    """A laid-out seal: overall size and the primitives to draw."""

    width_mm: float
    height_mm: float
    shape: SealShape
    rings: tuple[Ring, ...] = ()
    frames: tuple[Frame, ...] = ()
    stars: tuple[Star, ...] = ()
    glyphs: tuple[Glyph, ...] = field(default_factory=tuple)


class _FontMetrics:
    """Advance widths, boxes and outlines from the seal font (fontTools), cached per process.

    A glyph is placed by its centre: half its advance across, the middle of the ideographic em
    box (OS/2 typo ascender/descender) up."""

    def __init__(self, path: str, index: int) -> None:
        from fontTools.ttLib import TTFont

        self.font = TTFont(path, fontNumber=index, lazy=True)
        self.cmap: dict[int, str] = self.font.getBestCmap()
        self.upm = int(self.font["head"].unitsPerEm)
        os2 = self.font["OS/2"]
        top, bottom = int(os2.sTypoAscender), int(os2.sTypoDescender)
        self.v_centre = (top + bottom) / 2
        self.em_half = (top - bottom) / 2 / self.upm
        self.glyphs = self.font.getGlyphSet()
        self._hmtx = self.font["hmtx"]
        self._lock = threading.Lock()  # the lazy font decompiles glyphs on first use

    def glyph_name(self, char: str) -> str:
        name = self.cmap.get(ord(char))
        if name is None:
            raise InvalidSealRequest.field("name", f"the seal font has no glyph for {char!r}")
        return name

    def advance(self, char: str) -> float:
        """Advance width as a fraction of the em."""
        return float(self._hmtx[self.glyph_name(char)][0]) / self.upm

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per process
    def box(self, char: str) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in ems around the glyph's centre: its advance × em cell joined with
        its ink bounds, so that whatever the glyph draws lies inside."""
        from fontTools.pens.boundsPen import BoundsPen  # type: ignore[import-untyped]

        pen = BoundsPen(self.glyphs)
        with self._lock:
            self.glyphs[self.glyph_name(char)].draw(pen)
        advance = self.advance(char) * self.upm
        x0, y0, x1, y1 = pen.bounds or (0, 0, 0, 0)
        top, bottom = (
            self.v_centre + self.em_half * self.upm,
            self.v_centre - self.em_half * self.upm,
        )
        return (
            (min(0.0, x0) - advance / 2) / self.upm,
            (min(bottom, y0) - self.v_centre) / self.upm,
            (max(advance, x1) - advance / 2) / self.upm,
            (max(top, y1) - self.v_centre) / self.upm,
        )

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per process
    def outline(self, char: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
        """The glyph outline as (op, coords) in font units: ``m``/``l``/``c``/``h``."""
        from fontTools.pens.basePen import BasePen  # type: ignore[import-untyped]

        ops: list[tuple[str, tuple[float, ...]]] = []

        class _Pen(BasePen):  # type: ignore[misc]
            def _moveTo(self, pt: tuple[float, float]) -> None:  # noqa: N802
                ops.append(("m", pt))

            def _lineTo(self, pt: tuple[float, float]) -> None:  # noqa: N802
                ops.append(("l", pt))

            def _curveToOne(  # noqa: N802
                self, p1: tuple[float, float], p2: tuple[float, float], p3: tuple[float, float]
            ) -> None:
                ops.append(("c", (*p1, *p2, *p3)))

            def _closePath(self) -> None:  # noqa: N802
                ops.append(("h", ()))

        with self._lock:
            self.glyphs[self.glyph_name(char)].draw(_Pen(self.glyphs))
        return tuple(ops)


@functools.lru_cache(maxsize=1)
def metrics() -> _FontMetrics:
    """The process-wide metrics of the seal font."""
    return _FontMetrics(*seal_font())


def glyph_corners(glyph: Glyph) -> tuple[tuple[float, float], ...]:
    """The four corners (mm, counter-clockwise) of a glyph's box as drawn: the font's box for the
    character (:meth:`_FontMetrics.box`) scaled, rotated and placed."""
    x0, y0, x1, y1 = metrics().box(glyph.char)
    sx, sy = glyph.size * glyph.x_scale, glyph.size
    c, s = math.cos(math.radians(glyph.angle)), math.sin(math.radians(glyph.angle))
    return tuple(
        (glyph.x + c * u * sx - s * v * sy, glyph.y + s * u * sx + c * v * sy)
        for u, v in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    )


def _horizontal(text: str, y: float, size: float, max_width: float) -> list[Glyph]:
    """A line of text centred on x = 0 at height ``y``, squeezed to ``max_width``."""
    if not text:
        return []
    m = metrics()
    natural = sum(m.advance(c) for c in text) * size
    x_scale = min(1.0, max_width / natural) if natural else 1.0
    x = -natural * x_scale / 2
    glyphs = []
    for char in text:
        advance = m.advance(char) * size * x_scale
        glyphs.append(Glyph(char, x + advance / 2, y, size, 0.0, x_scale))
        x += advance
    return glyphs


@dataclass(frozen=True)
class _Path:
    """The ellipse (rx, ry) the glyph centres run on, around the top (read left to right, tops
    outward) or the bottom (left to right, tops inward). Positions along it are *reading degrees*:
    polar angles seen from the seal's centre, 0 at the top (bottom) middle, growing rightwards."""

    rx: float
    ry: float
    top: bool

    def place(self, char: str, size: float, x_scale: float, at: float) -> Glyph:
        """The glyph whose centre is at ellipse parameter ``at`` reading degrees from the middle,
        upright along the normal."""
        t = math.radians(90 - at if self.top else 270 + at)
        normal = math.degrees(math.atan2(math.sin(t) / self.ry, math.cos(t) / self.rx))
        angle = normal - 90 if self.top else normal + 90
        return Glyph(char, self.rx * math.cos(t), self.ry * math.sin(t), size, angle, x_scale)

    def extent(self, glyph: Glyph, near: float) -> tuple[float, float]:
        """(first, last): the reading degrees the glyph's box spans as seen from the centre
        (within half a turn of ``near``)."""
        angles = []
        for x, y in glyph_corners(glyph):
            polar = math.degrees(math.atan2(y, x))
            reading = (90 - polar) if self.top else (polar - 270)
            angles.append(near + (reading - near + 180) % 360 - 180)
        return min(angles), max(angles)


def _run(
    text: str, path: _Path, size: float, x_scale: float, gap: float, extra: float, start: float
) -> tuple[list[Glyph], float]:
    """Glyphs one after another from reading degree ``start``: each box begins where the last
    one's ends, plus ``gap`` mm at the path's inner edge and ``extra`` degrees, the same step
    between every two. Boxes in disjoint wedges from the centre never meet. Returns the glyphs
    and the last box's end (degrees)."""
    circle = path.rx == path.ry
    step = math.degrees(gap / (min(path.rx, path.ry) - size * metrics().em_half)) + extra
    glyphs: list[Glyph] = []
    target, end = start, start
    for char in text:
        at = target
        glyph = path.place(char, size, x_scale, at)
        first, last = path.extent(glyph, at)
        # On a circle a box's wedge turns with it; on an ellipse, close in (d first / d at ≈ 1).
        for _ in range(0 if circle else 12):
            if abs(first - target) < 1e-6:
                break
            at += target - first
            glyph = path.place(char, size, x_scale, at)
            first, last = path.extent(glyph, at)
        if first < target:
            at += target - first + (1e-6 if circle else 1e-3)
            glyph = path.place(char, size, x_scale, at)
            first, last = path.extent(glyph, at)
        glyphs.append(glyph)
        end = last
        target = last + step
    return glyphs, end


def _arc(
    text: str,
    path_for: Callable[[float], _Path],
    *,
    size: float,
    min_size: float,
    x_scale: float,
    min_x_scale: float,
    max_span: float,
    min_span: float = 0.0,
    gap: float = 0.18,
) -> list[Glyph]:
    """``text`` along the path ``path_for(size)``, centred, by advance widths with a gap of ``gap``
    ems (× x_scale, at least 1.5 × MARGIN_MM) between boxes. A text longer than ``max_span``
    degrees is fitted the way seals are cut: the glyphs are narrowed down to ``min_x_scale``,
    then made smaller down to ``min_size``, then narrowed further down to 0.3; a short one is
    spread to ``min_span``."""
    if not text:
        return []

    def gap_mm(em: float, squeeze: float) -> float:
        return max(gap * em * squeeze, 1.5 * MARGIN_MM)

    def span(em: float, squeeze: float) -> float:
        return _run(text, path_for(em), em, squeeze, gap_mm(em, squeeze), 0.0, 0.0)[1]

    def largest(lo: float, hi: float, fits: Callable[[float], bool]) -> float:
        """The largest value in [lo, hi] that fits (``fits(lo)`` holds), by bisection."""
        if fits(hi):
            return hi
        for _ in range(18):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    floor = min(0.3, min_x_scale)
    if span(min_size, floor) > max_span:
        raise InvalidSealRequest.field("name", f"{text!r} is too long to fit on the seal")
    if span(size, min_x_scale) <= max_span:
        x_scale = largest(min_x_scale, x_scale, lambda xs: span(size, xs) <= max_span)
    elif span(min_size, min_x_scale) <= max_span:
        x_scale = min_x_scale
        size = largest(min_size, size, lambda em: span(em, x_scale) <= max_span)
    else:
        size = min_size
        x_scale = largest(floor, min_x_scale, lambda xs: span(size, xs) <= max_span)
    path, between = path_for(size), gap_mm(size, x_scale)
    natural = span(size, x_scale)
    extra = 0.0
    if len(text) > 1 and natural < min_span:
        cell = math.degrees(size * x_scale / min(path.rx, path.ry))
        extra = min(cell, (min_span - natural) / (len(text) - 1))
    start = -natural / 2 - extra * (len(text) - 1) / 2
    glyphs, end = _run(text, path, size, x_scale, between, extra, start)
    if path.rx != path.ry:  # an ellipse: the spans differ a little with the start; centre again
        for _ in range(3):
            start -= (start + end) / 2
            glyphs, end = _run(text, path, size, x_scale, between, extra, start)
    return glyphs


def _inside(rx: float, ry: float, *, top: bool) -> Callable[[float], _Path]:
    """The path for glyphs of an em size whose outer edges run along the ellipse (rx, ry)."""

    def path(size: float) -> _Path:
        inset = size * metrics().em_half
        return _Path(rx - inset, ry - inset, top)

    return path


def _round(design: SealDesign, diameter: float) -> Layout:
    r = diameter / 2
    border = max(1.0, diameter * 0.028)
    inner = r - border  # inner edge of the ring
    em_half = metrics().em_half
    scale = diameter / 42
    name = design.name

    glyphs = _arc(
        name,
        _inside(inner - 0.7, inner - 0.7, top=True),
        size=6.5 * scale,
        min_size=3.6 * scale,
        x_scale=0.85,
        min_x_scale=0.5,
        max_span=250.0,
        min_span=min(250.0, 36.0 * len(name)),
    )
    limit = inner  # the kind text stays inside this radius
    if design.code:
        code = _arc(
            design.code,
            _inside(inner - 0.5, inner - 0.5, top=False),
            size=2.2 * scale,
            min_size=1.8 * scale,
            x_scale=0.9,
            min_x_scale=0.6,
            max_span=80.0,
            gap=0.25,
        )
        glyphs += code
        limit = min(math.hypot(x, y) for g in code for x, y in glyph_corners(g))
    stars = [Star(0, 0 if design.kind is SealKind.OFFICIAL else r * 0.05, r * 0.33)]
    label = design.kind.label
    if design.kind is SealKind.BUSINESS and design.business_number:
        label = f"{label}（{design.business_number}）"
    kind_size = 4.5 * scale
    kind_y = -r * 0.5
    bottom = abs(kind_y) + kind_size * em_half
    half_width = math.sqrt(max(0.0, (limit - 2 * MARGIN_MM) ** 2 - bottom**2))
    glyphs += _horizontal(label, kind_y, kind_size, min(r * 1.15, 2 * half_width))
    return Layout(
        diameter,
        diameter,
        SealShape.ROUND,
        rings=(Ring(r - border / 2, r - border / 2, border),),
        stars=tuple(stars),
        glyphs=tuple(glyphs),
    )


def _oval(design: SealDesign, width: float, height: float) -> Layout:
    a, b = width / 2, height / 2
    border = 1.0
    name = design.name
    glyphs = _arc(
        name,
        _inside(a - border - 0.8, b - border - 0.8, top=True),
        size=4.0 * height / 30,
        min_size=1.8 * height / 30,
        x_scale=0.8,
        min_x_scale=0.5,
        max_span=180.0,
        min_span=min(180.0, 30.0 * len(name)),
    )
    number = design.taxpayer_number
    if number:
        glyphs += _horizontal(number, -b * 0.14, 3.2 * height / 30, 2 * a * 0.74)
    label = design.kind.label or "发票专用章"
    glyphs += _horizontal(label, -b * 0.58, 3.8 * height / 30, a * 1.1)
    return Layout(
        width,
        height,
        SealShape.OVAL,
        rings=(Ring(a - border / 2, b - border / 2, border),),
        glyphs=tuple(glyphs),
    )


def _personal(design: SealDesign, width: float, height: float, shape: SealShape) -> Layout:
    border = max(0.8, min(width, height) * 0.05)
    name = design.name
    if shape is SealShape.RECTANGLE:
        glyphs = _horizontal(name, 0, height * 0.62, width - 2 * border - 1)
        return Layout(
            width,
            height,
            shape,
            frames=(Frame(width / 2 - border / 2, height / 2 - border / 2, border),),
            glyphs=tuple(glyphs),
        )
    text = name
    if len(text) == 2:
        text += "之印"
    elif len(text) == 3:
        text += "印"
    inner_w, inner_h = width - 2 * border - 1.0, height - 2 * border - 1.0
    columns = max(1, math.ceil(len(text) / 2))
    cell_w, cell_h = inner_w / columns, inner_h / 2
    size = min(cell_w / 0.95, cell_h) * 0.92
    x_scale = min(1.0, cell_w * 0.95 / size)
    glyphs = []
    for i, char in enumerate(text):
        column, row = divmod(i, 2)  # right column first, top to bottom
        x = inner_w / 2 - cell_w * (column + 0.5)
        y = inner_h / 2 - cell_h * (row + 0.5)
        glyphs.append(Glyph(char, x, y, size, 0.0, x_scale))
    return Layout(
        width,
        height,
        shape,
        frames=(Frame(width / 2 - border / 2, height / 2 - border / 2, border),),
        glyphs=tuple(glyphs),
    )


def layout(design: SealDesign) -> Layout:
    """Lay a design out into primitives (mm, origin at the centre, y up)."""
    name = design.name.strip()
    if not name:
        raise InvalidSealRequest.field("name", "a seal needs a name")
    if len(name) > 40:
        raise InvalidSealRequest.field("name", "at most 40 characters fit on a seal")
    for char in name + design.taxpayer_number + design.business_number + design.code:
        metrics().glyph_name(char)
    width, height = design.size_mm()
    shape = design.resolved_shape()
    if shape is SealShape.ROUND:
        return _round(design, width)
    if shape is SealShape.OVAL:
        return _oval(design, width, height)
    return _personal(design, width, height, shape)


# --- PNG ----------------------------------------------------------------------------------------

SUPERSAMPLE = 3


@functools.lru_cache(maxsize=64)
def _pil_font(px: int) -> ImageFont.FreeTypeFont:
    path, index = seal_font()
    return ImageFont.truetype(path, px, index=index)


def _draw_glyph(
    mask: Image.Image, glyph: Glyph, centre: tuple[float, float], px_per_mm: float
) -> None:
    """Ink one glyph into ``mask`` where the layout put it: FreeType draws it upright at a whole
    pixel size, one affine resampling scales, narrows, rotates and places it (sub-pixel)."""
    m = metrics()
    em = max(4, round(glyph.size * px_per_mm))
    pad = em // 2
    advance = m.advance(glyph.char) * em
    baseline = pad + em * (m.v_centre / m.upm + m.em_half)  # the em box's top sits at pad
    tile = Image.new("L", (math.ceil(advance) + 2 * pad, em + 2 * pad), 0)
    ImageDraw.Draw(tile).text(
        (pad, baseline), glyph.char, font=_pil_font(em), fill=255, anchor="ls"
    )
    tile_centre = (pad + advance / 2, baseline - em * m.v_centre / m.upm)
    scale = glyph.size * px_per_mm / em
    sx, sy = scale * glyph.x_scale, scale
    c, s = math.cos(math.radians(glyph.angle)), math.sin(math.radians(glyph.angle))

    def forward(tx: float, ty: float) -> tuple[float, float]:  # tile -> mask (y down)
        dx, dy = (tx - tile_centre[0]) * sx, (ty - tile_centre[1]) * sy
        return centre[0] + c * dx + s * dy, centre[1] - s * dx + c * dy

    corners = [forward(x, y) for x in (0, tile.width) for y in (0, tile.height)]
    left, top = math.floor(min(x for x, _ in corners)), math.floor(min(y for _, y in corners))
    right, bottom = math.ceil(max(x for x, _ in corners)), math.ceil(max(y for _, y in corners))
    # mask -> tile: undo the placement, the rotation, then the scale
    a, b = c / sx, -s / sx
    d, e = s / sy, c / sy
    ox, oy = left - centre[0], top - centre[1]
    placed = tile.transform(
        (right - left, bottom - top),
        Image.Transform.AFFINE,
        (a, b, tile_centre[0] + a * ox + b * oy, d, e, tile_centre[1] + d * ox + e * oy),
        resample=Image.Resampling.BICUBIC,
    )
    region = mask.crop((left, top, right, bottom))
    mask.paste(ImageChops.lighter(region, placed), (left, top))


def _mask(lay: Layout, px_per_mm: float) -> Image.Image:
    width = max(1, round(lay.width_mm * px_per_mm))
    height = max(1, round(lay.height_mm * px_per_mm))
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (width / 2 + x * px_per_mm, height / 2 - y * px_per_mm)

    for ring in lay.rings:
        outer = (ring.rx + ring.width / 2, ring.ry + ring.width / 2)
        inner = (ring.rx - ring.width / 2, ring.ry - ring.width / 2)
        draw.ellipse([to_px(-outer[0], outer[1]), to_px(outer[0], -outer[1])], fill=255)
        draw.ellipse([to_px(-inner[0], inner[1]), to_px(inner[0], -inner[1])], fill=0)
    for frame in lay.frames:
        o = (frame.half_w + frame.width / 2, frame.half_h + frame.width / 2)
        i = (frame.half_w - frame.width / 2, frame.half_h - frame.width / 2)
        draw.rectangle([to_px(-o[0], o[1]), to_px(o[0], -o[1])], fill=255)
        draw.rectangle([to_px(-i[0], i[1]), to_px(i[0], -i[1])], fill=0)
    for star in lay.stars:
        draw.polygon([to_px(x, y) for x, y in star.points()], fill=255)
    for glyph in lay.glyphs:
        _draw_glyph(mask, glyph, to_px(glyph.x, glyph.y), px_per_mm)
    return mask


def render_png(design: SealDesign | Layout, dpi: int = 300) -> bytes:
    """The seal as an RGBA PNG: seal-red ink, fully transparent background, ``dpi`` recorded."""
    if not 72 <= dpi <= 1200:
        raise InvalidSealRequest.field("dpi", "must be 72-1200")
    lay = design if isinstance(design, Layout) else layout(design)
    px_per_mm = dpi / 25.4
    big = _mask(lay, px_per_mm * SUPERSAMPLE)
    size = (max(1, round(lay.width_mm * px_per_mm)), max(1, round(lay.height_mm * px_per_mm)))
    alpha = big.resize(size, Image.Resampling.LANCZOS)
    image = Image.new("RGBA", size, (*INK, 0))
    image.putalpha(alpha)
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(dpi, dpi), optimize=True)
    return out.getvalue()


# --- vector: PDF content stream and SVG ----------------------------------------------------------


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def _ellipse_ops(rx: float, ry: float, *, reverse: bool = False) -> Iterator[str]:
    kx, ky = rx * _KAPPA, ry * _KAPPA
    n = _num
    if not reverse:
        yield f"{n(rx)} 0 m"
        yield f"{n(rx)} {n(ky)} {n(kx)} {n(ry)} 0 {n(ry)} c"
        yield f"{n(-kx)} {n(ry)} {n(-rx)} {n(ky)} {n(-rx)} 0 c"
        yield f"{n(-rx)} {n(-ky)} {n(-kx)} {n(-ry)} 0 {n(-ry)} c"
        yield f"{n(kx)} {n(-ry)} {n(rx)} {n(-ky)} {n(rx)} 0 c h"
    else:
        yield f"{n(rx)} 0 m"
        yield f"{n(rx)} {n(-ky)} {n(kx)} {n(-ry)} 0 {n(-ry)} c"
        yield f"{n(-kx)} {n(-ry)} {n(-rx)} {n(-ky)} {n(-rx)} 0 c"
        yield f"{n(-rx)} {n(ky)} {n(-kx)} {n(ry)} 0 {n(ry)} c"
        yield f"{n(kx)} {n(ry)} {n(rx)} {n(ky)} {n(rx)} 0 c h"


def _glyph_matrix(glyph: Glyph) -> tuple[float, float, float, float, float, float]:
    m = metrics()
    scale = glyph.size / m.upm
    sx, sy = scale * glyph.x_scale, scale
    ox, oy = -m.advance(glyph.char) * m.upm / 2, -m.v_centre
    c, s = math.cos(math.radians(glyph.angle)), math.sin(math.radians(glyph.angle))
    # translate(x, y) · rotate · scale(sx, sy) · translate(ox, oy)
    a, b = c * sx, s * sx
    cc, d = -s * sy, c * sy
    e = glyph.x + a * ox + cc * oy
    f = glyph.y + b * ox + d * oy
    return a, b, cc, d, e, f


def pdf_content(design: SealDesign | Layout) -> tuple[bytes, float, float]:
    """A PDF content stream drawing the seal in a box of (width, height) points, origin at the
    box's lower-left corner; returns (stream, width_pt, height_pt). Pure vector, no resources."""
    lay = design if isinstance(design, Layout) else layout(design)
    w_pt, h_pt = lay.width_mm * PT_PER_MM, lay.height_mm * PT_PER_MM
    n = _num
    ops = [
        "q",
        f"{n(INK[0] / 255)} {n(INK[1] / 255)} {n(INK[2] / 255)} rg",
        f"{n(PT_PER_MM)} 0 0 {n(PT_PER_MM)} {n(w_pt / 2)} {n(h_pt / 2)} cm",
    ]
    for ring in lay.rings:
        ops += _ellipse_ops(ring.rx + ring.width / 2, ring.ry + ring.width / 2)
        ops += _ellipse_ops(ring.rx - ring.width / 2, ring.ry - ring.width / 2, reverse=True)
        ops.append("f")
    for frame in lay.frames:
        o = (frame.half_w + frame.width / 2, frame.half_h + frame.width / 2)
        i = (frame.half_w - frame.width / 2, frame.half_h - frame.width / 2)
        ops.append(f"{n(-o[0])} {n(-o[1])} {n(2 * o[0])} {n(2 * o[1])} re")
        ops.append(f"{n(-i[0])} {n(-i[1])} {n(2 * i[0])} {n(2 * i[1])} re f*")
    for star in lay.stars:
        points = star.points()
        ops.append(f"{n(points[0][0])} {n(points[0][1])} m")
        ops += [f"{n(x)} {n(y)} l" for x, y in points[1:]]
        ops.append("h f")
    m = metrics()
    for glyph in lay.glyphs:
        ops.append("q " + " ".join(n(v) for v in _glyph_matrix(glyph)) + " cm")
        for op, coords in m.outline(glyph.char):
            ops.append(" ".join(str(round(v)) for v in coords) + f" {op}" if coords else op)
        ops.append("f Q")
    ops.append("Q")
    return "\n".join(ops).encode("ascii"), w_pt, h_pt


def render_svg(design: SealDesign | Layout) -> bytes:
    """The seal as SVG (millimetre viewBox, same outlines as the PDF content)."""
    lay = design if isinstance(design, Layout) else layout(design)
    n = _num
    w, h = lay.width_mm, lay.height_mm
    fill = "#{:02x}{:02x}{:02x}".format(*INK)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{n(w)}mm" height="{n(h)}mm" '
        f'viewBox="{n(-w / 2)} {n(-h / 2)} {n(w)} {n(h)}">',
        f'<g fill="{fill}" transform="scale(1,-1)">',
    ]
    for ring in lay.rings:
        ro = (ring.rx + ring.width / 2, ring.ry + ring.width / 2)
        ri = (ring.rx - ring.width / 2, ring.ry - ring.width / 2)
        parts.append(
            f'<path fill-rule="evenodd" d="M{n(ro[0])},0 A{n(ro[0])},{n(ro[1])} 0 1 0 '
            f"{n(-ro[0])},0 A{n(ro[0])},{n(ro[1])} 0 1 0 {n(ro[0])},0 Z "
            f"M{n(ri[0])},0 A{n(ri[0])},{n(ri[1])} 0 1 0 {n(-ri[0])},0 "
            f'A{n(ri[0])},{n(ri[1])} 0 1 0 {n(ri[0])},0 Z"/>'
        )
    for frame in lay.frames:
        o = (frame.half_w + frame.width / 2, frame.half_h + frame.width / 2)
        i = (frame.half_w - frame.width / 2, frame.half_h - frame.width / 2)
        parts.append(
            f'<path fill-rule="evenodd" d="M{n(-o[0])},{n(-o[1])}h{n(2 * o[0])}v{n(2 * o[1])}'
            f"h{n(-2 * o[0])}Z M{n(-i[0])},{n(-i[1])}h{n(2 * i[0])}v{n(2 * i[1])}"
            f'h{n(-2 * i[0])}Z"/>'
        )
    for star in lay.stars:
        points = " ".join(f"{n(x)},{n(y)}" for x, y in star.points())
        parts.append(f'<polygon points="{points}"/>')
    m = metrics()
    for glyph in lay.glyphs:
        matrix = ",".join(n(v) for v in _glyph_matrix(glyph))
        d = []
        for op, coords in m.outline(glyph.char):
            cmd = {"m": "M", "l": "L", "c": "C", "h": "Z"}[op]
            d.append(cmd + ",".join(str(round(v)) for v in coords))
        parts.append(f'<path transform="matrix({matrix})" d="{"".join(d)}"/>')
    parts.append("</g></svg>")
    return "".join(parts).encode()


def picture_info(design: SealDesign) -> dict[str, Any]:
    """Size of a design in millimetres (for SES_ESPictrueInfo)."""
    width, height = design.size_mm()
    return {"width": width, "height": height}
