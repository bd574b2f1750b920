"""Seal pictures: one layout per kind, rendered to PNG (Pillow), to PDF content and to SVG.

A :class:`SealDesign` (kind, name, texts, size) is laid out once into primitives in millimetres
with the origin at the seal's centre and y pointing up — rings, a five-pointed star and glyphs
placed with a rotation — and the same primitives are drawn by three back ends:

* :func:`render_png` — Pillow, supersampled, red ink on a transparent background at a DPI;
* :func:`pdf_content` — a PDF content stream (vector: glyph outlines from the CJK font via
  fontTools, so the seal needs no embedded font and looks the same in every viewer);
* :func:`render_svg` — the same paths as SVG.

Appearance follows the rules in STANDARDS.md: official and specialised seals are round (40–45 mm),
red, with a five-pointed star in the centre and the owner's name arced left to right along the
top, the kind text below the star; the invoice seal (发票专用章) is an oval 40×30 mm with the
taxpayer number across the centre; the personal-name seal (个人名章) is square, the name in two
columns read right to left.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from seal.errors import InvalidSealRequest
from seal.types import SealKind, SealShape

FONT_ENV = "GOVTRUST_SEAL_FONT"
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
)
INK = (218, 0, 0)
"""Seal red (RGB)."""
PT_PER_MM = 72 / 25.4
_KAPPA = 0.5522847498


@functools.lru_cache(maxsize=1)
def font_path() -> str:
    """The CJK font: ``$GOVTRUST_SEAL_FONT`` or WenQuanYi Micro Hei (fonts-wqy-microhei)."""
    override = os.environ.get(FONT_ENV)
    if override:
        return override
    for candidate in _FONT_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    fc_match = shutil.which("fc-match")
    if fc_match:
        found = subprocess.run(
            [fc_match, "-f", "%{file}", "WenQuanYi Micro Hei:lang=zh-cn"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found and os.path.isfile(found):
            return found
    raise InvalidSealRequest(
        "no CJK font found: install fonts-wqy-microhei or set GOVTRUST_SEAL_FONT"
    )


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
    """Advance widths and outlines from the CJK font (fontTools), cached per process."""

    def __init__(self, path: str) -> None:
        from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

        self.font = TTFont(path, fontNumber=0, lazy=True)
        self.cmap: dict[int, str] = self.font.getBestCmap()
        self.upm = int(self.font["head"].unitsPerEm)
        hhea = self.font["hhea"]
        self.v_centre = (int(hhea.ascent) + int(hhea.descent)) / 2
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
    """The process-wide font metrics."""
    return _FontMetrics(font_path())


def _text_width(text: str, size: float, x_scale: float = 1.0) -> float:
    m = metrics()
    return sum(m.advance(c) for c in text) * size * x_scale


def _horizontal(text: str, y: float, size: float, max_width: float) -> list[Glyph]:
    """A line of text centred on x = 0 at height ``y``, squeezed to ``max_width``."""
    if not text:
        return []
    natural = _text_width(text, size)
    x_scale = min(1.0, max_width / natural) if natural else 1.0
    m = metrics()
    x = -natural * x_scale / 2
    glyphs = []
    for char in text:
        advance = m.advance(char) * size * x_scale
        glyphs.append(Glyph(char, x + advance / 2, y, size, 0.0, x_scale))
        x += advance
    return glyphs


def _arc(
    text: str, rx: float, ry: float, size: float, span_deg: float, *, top: bool, x_scale: float
) -> list[Glyph]:
    """Characters on an ellipse with radii (rx, ry), evenly spaced by arc length over at most
    ``span_deg`` around the top (read left to right, tops outward) or the bottom (tops inward)."""
    n = len(text)
    if n == 0:
        return []
    # Sample the ellipse to map arc length to the parameter t (angles measured from +x, ccw).
    centre = 90.0 if top else 270.0
    samples = 720
    half = math.radians(span_deg) / 2
    ts = [math.radians(centre) - half + 2 * half * i / samples for i in range(samples + 1)]
    lengths = [0.0]
    for a, b in itertools.pairwise(ts):
        lengths.append(
            lengths[-1]
            + math.hypot(rx * (math.cos(b) - math.cos(a)), ry * (math.sin(b) - math.sin(a)))
        )
    total = lengths[-1]
    pitch = min(total / n, size * 1.15)
    used = pitch * n
    positions = []
    for i in range(n):
        target = (total - used) / 2 + pitch * (i + 0.5)
        j = min(range(len(lengths)), key=lambda k: abs(lengths[k] - target))
        t = ts[j]
        x, y = rx * math.cos(t), ry * math.sin(t)
        normal = math.degrees(math.atan2(math.sin(t) / ry, math.cos(t) / rx))
        positions.append((x, y, normal - 90 if top else normal + 90))
    if top:
        positions.reverse()  # sampled counter-clockwise, i.e. right to left along the top
    return [
        Glyph(c, x, y, size, angle, x_scale)
        for c, (x, y, angle) in zip(text, positions, strict=True)
    ]


def _arc_length(rx: float, ry: float, span_deg: float, steps: int = 360) -> float:
    """Length of the ellipse arc of ``span_deg`` centred on the top."""
    half = math.radians(span_deg) / 2
    ts = [math.pi / 2 - half + 2 * half * i / steps for i in range(steps + 1)]
    return sum(
        math.hypot(rx * (math.cos(b) - math.cos(a)), ry * (math.sin(b) - math.sin(a)))
        for a, b in itertools.pairwise(ts)
    )


def _round(design: SealDesign, diameter: float) -> Layout:
    r = diameter / 2
    border = max(1.0, diameter * 0.028)
    ring_r = r - border / 2
    name = design.name
    size = min(6.5 * diameter / 42, 0.42 * r)
    text_r = r - border - 0.7 - size / 2
    span = 250.0 if len(name) > 6 else 40.0 * len(name)
    # Shrink the em until the name fits in the span at 1.05 em pitch (x-scaled 0.85).
    while len(name) * size * 0.95 > math.radians(span) * text_r and size > 2.5:
        size *= 0.95
        text_r = r - border - 0.7 - size / 2
    glyphs = _arc(name, text_r, text_r, size, span, top=True, x_scale=0.85)
    star_r = r * 0.33
    stars = [Star(0, 0 if design.kind is SealKind.OFFICIAL else r * 0.05, star_r)]
    label = design.kind.label
    if design.kind is SealKind.BUSINESS and design.business_number:
        label = f"{label}（{design.business_number}）"
    kind_size = 4.5 * diameter / 42
    glyphs += _horizontal(label, -r * 0.5, kind_size, r * 1.15)
    if design.code:
        code_size = 2.0 * diameter / 42
        glyphs += _arc(
            design.code,
            r - border - 0.5 - code_size / 2,
            r - border - 0.5 - code_size / 2,
            code_size,
            70.0,
            top=False,
            x_scale=0.9,
        )
    return Layout(
        diameter,
        diameter,
        SealShape.ROUND,
        rings=(Ring(ring_r, ring_r, border),),
        stars=tuple(stars),
        glyphs=tuple(glyphs),
    )


def _oval(design: SealDesign, width: float, height: float) -> Layout:
    a, b = width / 2, height / 2
    border = 1.0
    size = 4.0 * height / 30
    text_a, text_b = a - border - 0.6 - size / 2, b - border - 0.6 - size / 2
    name = design.name
    while len(name) * size * 0.85 > _arc_length(text_a, text_b, 150.0) and size > 2.2:
        size *= 0.95
        text_a, text_b = a - border - 0.6 - size / 2, b - border - 0.6 - size / 2
    glyphs = _arc(name, text_a, text_b, size, 150.0, top=True, x_scale=0.8)
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
    return ImageFont.truetype(font_path(), px, index=0)


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
        px = max(4, round(glyph.size * px_per_mm))
        font = _pil_font(px)
        box = px * 2
        tile = Image.new("L", (box, box), 0)
        ImageDraw.Draw(tile).text((box / 2, box / 2), glyph.char, font=font, fill=255, anchor="mm")
        if glyph.x_scale != 1.0:
            squeezed = max(1, round(box * glyph.x_scale))
            tile = tile.resize((squeezed, box), Image.Resampling.BICUBIC)
        if glyph.angle:
            tile = tile.rotate(glyph.angle, resample=Image.Resampling.BICUBIC, expand=True)
        cx, cy = to_px(glyph.x, glyph.y)
        origin = (round(cx - tile.width / 2), round(cy - tile.height / 2))
        region = mask.crop((origin[0], origin[1], origin[0] + tile.width, origin[1] + tile.height))
        from PIL import ImageChops

        mask.paste(ImageChops.lighter(region, tile), origin)
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
