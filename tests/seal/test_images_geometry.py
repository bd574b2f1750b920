"""The seal face measured: glyph boxes never meet, stay inside the ring, are spaced evenly, and the
rendered ink stays where the layout put it (issue #14).

A glyph's box here is computed independently of the layout code: the ink bounds of its outline
(fontTools) around the point the renderers anchor it at, scaled, narrowed, rotated and placed as
the :class:`Glyph` says. Two convex boxes are disjoint when a separating axis exists.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import os

import pytest
from fontTools.pens.boundsPen import BoundsPen  # type: ignore[import-untyped]
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from seal import images
from seal.images import Glyph, Layout, SealDesign, layout, render_png
from seal.types import SealKind

Point = tuple[float, float]

# Real names of departments and companies: CJK with ASCII digits and full-width parentheses.
_NAMES = (
    "福建省福州市鼓楼区市场监督管理局（知识产权局）"
    "国家税务总局福州市鼓楼区税务局第1税务分局"
    "中国（福建）自由贸易试验区福州片区管理委员会"
    "福州市第12中学福建示例科技有限公司福州分公司（2）"
)
CODES = ("3501000012345", "35010200012345", "350102000123456", "3501020001234567")
MARGIN = 0.3  # mm between a glyph box and the ring (images.MARGIN_MM)


def names(length: int) -> list[str]:
    """Three names of ``length`` characters cut from the pool at different places."""
    starts = (0, len(_NAMES) // 3, 2 * len(_NAMES) // 3)
    pool = _NAMES * 2
    return [pool[s : s + length] for s in starts]


@functools.lru_cache(maxsize=512)
def _ink(char: str) -> tuple[float, float, float, float]:
    """Ink bounds in ems around the anchor (half the advance across, ``v_centre`` up)."""
    m = images.metrics()
    pen = BoundsPen(m.glyphs)
    m.glyphs[m.cmap[ord(char)]].draw(pen)
    x0, y0, x1, y1 = pen.bounds
    ox, oy = m.advance(char) * m.upm / 2, m.v_centre
    return ((x0 - ox) / m.upm, (y0 - oy) / m.upm, (x1 - ox) / m.upm, (y1 - oy) / m.upm)


def _cell(char: str) -> tuple[float, float, float, float]:
    """The advance × ideographic em box, in ems around the anchor (horizontal extent only used)."""
    half = images.metrics().advance(char) / 2
    return (-half, -0.5, half, 0.5)


def quad(glyph: Glyph, bounds: tuple[float, float, float, float]) -> list[Point]:
    """The corners (mm) of ``bounds`` (ems around the anchor) as the glyph is drawn."""
    x0, y0, x1, y1 = bounds
    sx, sy = glyph.size * glyph.x_scale, glyph.size
    c, s = math.cos(math.radians(glyph.angle)), math.sin(math.radians(glyph.angle))
    return [
        (glyph.x + c * u * sx - s * v * sy, glyph.y + s * u * sx + c * v * sy)
        for u, v in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    ]


def ink_box(glyph: Glyph) -> list[Point]:
    """The glyph's ink box (mm)."""
    return quad(glyph, _ink(glyph.char))


def separation(p: list[Point], q: list[Point]) -> float:
    """The widest gap (mm) between two convex polygons along any of their edge normals; ≤ 0 when
    they intersect (separating-axis theorem)."""
    best = -math.inf
    for poly in (p, q):
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
            length = math.hypot(x2 - x1, y2 - y1)
            if length == 0:
                continue
            nx, ny = (y2 - y1) / length, (x1 - x2) / length
            a = [nx * x + ny * y for x, y in p]
            b = [nx * x + ny * y for x, y in q]
            best = max(best, min(b) - max(a), min(a) - max(b))
    return best


def _inner(lay: Layout) -> tuple[float, float]:
    ring = lay.rings[0]
    return ring.rx - ring.width / 2, ring.ry - ring.width / 2


def assert_face_is_clean(lay: Layout, what: str) -> None:
    """Every glyph box inside the ring with MARGIN to spare; no two boxes (nor a box and the
    star) closer than MARGIN, so that strokes stay apart even at 100 dpi (0.25 mm a pixel) —
    except neighbours on one horizontal line, which keep the font's own spacing (> 0.05 mm)."""
    a, b = _inner(lay)
    boxes = [(g, ink_box(g)) for g in lay.glyphs]
    m = images.metrics()
    for glyph, box in boxes:
        # the PDF and SVG back ends draw the outline through this matrix: onto the same box
        xx, xy, yx, yy, dx, dy = images._glyph_matrix(glyph)
        x0, y0, x1, y1 = (v * m.upm for v in _ink(glyph.char))
        ox, oy = m.advance(glyph.char) * m.upm / 2, m.v_centre
        drawn = [
            (xx * (u + ox) + yx * (v + oy) + dx, xy * (u + ox) + yy * (v + oy) + dy)
            for u, v in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        ]
        flat = [v for point in box for v in point]
        assert [v for point in drawn for v in point] == pytest.approx(flat), (
            f"{what}: the PDF draws {glyph.char!r} elsewhere"
        )
        for x, y in box:
            reach = math.hypot(x / (a - MARGIN), y / (b - MARGIN))
            assert reach <= 1.0, f"{what}: {glyph.char!r} reaches the ring ({reach:.3f})"
    star = Glyph("★", 0, 0, 0)
    shapes = boxes + [(star, [s.points()[i] for i in range(0, 10, 2)]) for s in lay.stars]
    for (g1, p), (g2, q) in itertools.combinations(shapes, 2):
        one_line = g1.angle == g2.angle == 0 and g1.y == g2.y and star not in (g1, g2)
        gap = separation(p, q)
        least = 0.05 if one_line else MARGIN
        assert gap >= least, f"{what}: {g1.char!r} and {g2.char!r} are {gap:.3f} mm apart"


@pytest.mark.parametrize("length", range(2, 31))
def test_round_seals_names_of_2_to_30_characters_and_codes_of_13_to_16_digits(
    length: int,
) -> None:
    kinds = itertools.cycle(
        [(SealKind.OFFICIAL, ""), (SealKind.FINANCE, ""), (SealKind.BUSINESS, "12")]
    )
    sizes = itertools.cycle([40, 42, 45])
    for name, code in itertools.product(names(length), CODES):
        kind, number = next(kinds)
        design = SealDesign(kind, name, number, code=code, width_mm=next(sizes))
        assert_face_is_clean(layout(design), f"{design.width_mm} mm {name} / {code}")


@pytest.mark.parametrize("length", range(2, 31))
def test_invoice_seals_names_of_2_to_30_characters(length: int) -> None:
    for name in names(length):
        design = SealDesign(SealKind.INVOICE, name, taxpayer_number="91350100M000100Y43")
        assert_face_is_clean(layout(design), f"invoice {name}")


def _wedges(glyphs: tuple[Glyph, ...]) -> list[tuple[float, float]]:
    """Each glyph cell's extent seen from the centre, in degrees clockwise from the top."""
    result = []
    for glyph in glyphs:
        angles = [
            (90 - math.degrees(math.atan2(y, x)) + 180) % 360 - 180
            for x, y in quad(glyph, _cell(glyph.char))
        ]
        result.append((min(angles), max(angles)))
    return result


@pytest.mark.parametrize(
    "name",
    ["福州示例科技有限公司", "国家税务总局福州市管理局", "福州市第12中学（2）", "示例"],
)
def test_characters_on_the_arc_are_evenly_spaced_by_their_advance_widths(name: str) -> None:
    """The gap between two neighbouring characters' cells is the same all along the name,
    whether they are ideographs, digits or parentheses (示/例, 限/公, 管/理 were not)."""
    lay = layout(SealDesign(SealKind.OFFICIAL, name, code="3501000012345"))
    wedges = _wedges(lay.glyphs[: len(name)])
    gaps = [right[0] - left[1] for left, right in itertools.pairwise(wedges)]
    assert min(gaps) > 0
    assert max(gaps) - min(gaps) < 0.02, gaps


def test_a_long_name_is_narrowed_not_shrunk_first() -> None:
    """As seals are cut: a longer name keeps the em size and narrows its glyphs, until they are
    half width; only then does the em shrink."""

    def name_glyphs(name: str) -> tuple[Glyph, ...]:
        return layout(SealDesign(SealKind.OFFICIAL, name)).glyphs[: len(name)]

    eight, ten, thirty = (name_glyphs(n) for n in (_NAMES[:8], _NAMES[:10], _NAMES[:30]))
    assert eight[0].size == ten[0].size
    assert ten[0].x_scale < eight[0].x_scale == 0.85
    assert thirty[0].size < ten[0].size and 0.3 <= thirty[0].x_scale <= 0.5
    longest = SealDesign(SealKind.OFFICIAL, (_NAMES * 2)[:40], code=CODES[-1], width_mm=40)
    assert_face_is_clean(layout(longest), "the longest name on the smallest seal")


@pytest.mark.parametrize("dpi", [100, 400])
def test_rendered_ink_stays_in_the_glyph_boxes_inside_the_ring(dpi: int) -> None:
    """Draw only the arced name and the code of a 30-character seal: every inked pixel (alpha over
    40) lies in its glyph's box grown by one pixel, no box comes within a pixel of another (the
    strokes of neighbours would merge), and no ink reaches the ring's margin."""
    name = names(30)[0]
    full = layout(SealDesign(SealKind.OFFICIAL, name, code=CODES[-1], width_mm=40))
    arced = full.glyphs[: len(name) + len(CODES[-1])]
    lay = Layout(full.width_mm, full.height_mm, full.shape, glyphs=arced)
    alpha = Image.open(io.BytesIO(render_png(lay, dpi=dpi))).getchannel("A")
    ink = alpha.point(lambda v: 255 if v > 40 else 0)
    px = dpi / 25.4
    w, h = alpha.size

    def to_px(p: Point) -> Point:
        return (w / 2 + p[0] * px, h / 2 - p[1] * px)

    boxes = Image.new("L", alpha.size, 0)
    allowed = boxes.copy()  # the boxes grown by one pixel of anti-aliasing
    for glyph in arced:
        box = Image.new("L", alpha.size, 0)
        ImageDraw.Draw(box).polygon([to_px(p) for p in ink_box(glyph)], fill=255)
        grown = box.filter(ImageFilter.MaxFilter(3))
        near = [
            ImageChops.multiply(boxes, grown).getbbox(),
            ImageChops.multiply(allowed, box).getbbox(),
        ]
        assert near == [None, None], f"{glyph.char!r} comes within a pixel of another at {near}"
        boxes, allowed = ImageChops.lighter(boxes, box), ImageChops.lighter(allowed, grown)
    stray = ImageChops.subtract(ink, allowed)
    assert stray.getbbox() is None, f"ink outside its glyph box at {stray.getbbox()}"
    limit = (_inner(full)[0] - MARGIN) * px + 1.5
    ring = Image.new("L", alpha.size, 255)
    ImageDraw.Draw(ring).ellipse([w / 2 - limit, h / 2 - limit, w / 2 + limit, h / 2 + limit], 0)
    assert ImageChops.multiply(ink, ring).getbbox() is None, "ink in the ring's margin"
    assert ink.getbbox() is not None


def test_the_face_is_a_song_face_from_debian() -> None:
    path, index = images.seal_font()
    assert path == images.SEAL_FONT and path.startswith("/usr/share/fonts/")
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    assert TTFont(path, fontNumber=index, lazy=True)["name"].getDebugName(1) == "Noto Serif CJK SC"


def test_a_missing_seal_font_is_named_with_its_debian_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images.seal_font.cache_clear()
    # under /dev/null, which is no folder: the path can never exist (nothing to change either)
    monkeypatch.setattr(images, "SEAL_FONT", f"{os.devnull}/absent.ttc")
    try:
        with pytest.raises(images.SealFontMissing, match="fonts-noto-cjk"):
            images.seal_font()
    finally:
        monkeypatch.undo()
        images.seal_font.cache_clear()
    assert images.seal_font()[0] == images.SEAL_FONT
