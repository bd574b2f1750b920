"""Seal pictures: size at a DPI, red ink on a transparent background, one of each kind."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from seal.errors import InvalidSealRequest
from seal.images import SealDesign, pdf_content, render_png, render_svg
from seal.types import SealKind
from tests.conftest import DOCS_IMAGES_ENV

NAME = "福州示例科技有限公司"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _load(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGBA"
    return image


def _ink(image: Image.Image) -> tuple[int, int, int]:
    """(ink pixels, red ink pixels, fully transparent pixels)."""
    ink = red = clear = 0
    for r, g, b, a in image.get_flattened_data():  # type: ignore[misc]
        if a == 0:
            clear += 1
        elif a > 200:
            ink += 1
            red += r > 180 and g < 60 and b < 60
    return ink, red, clear


@pytest.mark.parametrize(
    ("design", "size_mm"),
    [
        (SealDesign(SealKind.OFFICIAL, NAME), (42, 42)),
        (SealDesign(SealKind.CONTRACT, NAME, width_mm=40), (40, 40)),
        (SealDesign(SealKind.FINANCE, NAME), (42, 42)),
        (SealDesign(SealKind.BUSINESS, NAME, business_number="3"), (42, 42)),
        (SealDesign(SealKind.INVOICE, NAME, taxpayer_number="91350100M000100Y43"), (40, 30)),
        (SealDesign(SealKind.PERSONAL_NAME, "张三"), (20, 20)),
    ],
)
def test_png_size_colour_and_transparency(design: SealDesign, size_mm: tuple[int, int]) -> None:
    image = _load(render_png(design, dpi=300))
    expected = tuple(round(mm * 300 / 25.4) for mm in size_mm)
    assert image.size == expected
    assert image.info["dpi"][0] == pytest.approx(300, abs=1)
    ink, red, clear = _ink(image)
    total = image.size[0] * image.size[1]
    assert red == ink and ink > total * 0.05, "the ink is seal red"
    assert clear > total * 0.4, "the background is transparent"
    if design.kind is not SealKind.PERSONAL_NAME:  # round and oval seals: corners are empty
        corner = image.getpixel((0, 0))
        assert isinstance(corner, tuple) and corner[3] == 0


def test_official_seal_has_star_ring_and_name_on_top() -> None:
    image = _load(render_png(SealDesign(SealKind.OFFICIAL, NAME), dpi=200))
    w, h = image.size
    alpha = image.getchannel("A")
    assert alpha.getpixel((w // 2, h // 2)) == 255  # star centre
    top_pixel = alpha.getpixel((w // 2, 2))
    assert isinstance(top_pixel, int) and top_pixel > 0  # ring at the top
    top = alpha.crop((0, 0, w, h // 3)).histogram()[255]
    bottom = alpha.crop((0, 2 * h // 3, w, h)).histogram()[255]
    assert top > bottom  # the name arcs along the top


def test_dpi_scales_pixels_not_millimetres() -> None:
    small = _load(render_png(SealDesign(SealKind.OFFICIAL, NAME), dpi=100))
    big = _load(render_png(SealDesign(SealKind.OFFICIAL, NAME), dpi=400))
    assert big.size[0] == pytest.approx(small.size[0] * 4, abs=2)


def test_vector_forms() -> None:
    stream, width, height = pdf_content(
        SealDesign(SealKind.INVOICE, NAME, taxpayer_number="91350100M000100Y43")
    )
    assert width == pytest.approx(40 * 72 / 25.4) and height == pytest.approx(30 * 72 / 25.4)
    assert b" rg" in stream and stream.count(b" cm") > 20 and b"f Q" in stream
    svg = render_svg(SealDesign(SealKind.OFFICIAL, NAME))
    assert svg.startswith(b"<svg") and b'width="42mm"' in svg and b"<polygon" in svg


def test_rules() -> None:
    with pytest.raises(InvalidSealRequest):
        SealDesign(SealKind.OFFICIAL, NAME, width_mm=38).size_mm()  # official: 40-45 mm
    with pytest.raises(InvalidSealRequest):
        render_png(SealDesign(SealKind.OFFICIAL, ""))
    with pytest.raises(InvalidSealRequest):
        render_png(SealDesign(SealKind.OFFICIAL, NAME), dpi=10)


def test_docs_example(docs_image: Callable[[str, bytes], Path]) -> None:
    """docs/seal-example.png (official, contract, invoice and personal seals); written into the
    tree only by ``make docs-images``."""
    designs = [
        SealDesign(SealKind.OFFICIAL, NAME, code="3501000012345678"),
        SealDesign(SealKind.CONTRACT, NAME, code="3501000012345678"),
        SealDesign(SealKind.INVOICE, NAME, taxpayer_number="91350100M000100Y43"),
        SealDesign(SealKind.PERSONAL_NAME, "张三"),
    ]
    pictures = [_load(render_png(d, dpi=200)) for d in designs]
    sheet = Image.new(
        "RGBA",
        (sum(p.width for p in pictures) + 40 * len(pictures), max(p.height for p in pictures)),
        (0, 0, 0, 0),
    )
    x = 0
    for picture in pictures:
        sheet.paste(picture, (x, (sheet.height - picture.height) // 2))
        x += picture.width + 40
    out = io.BytesIO()
    sheet.save(out, "PNG", dpi=(200, 200))
    before = (DOCS / "seal-example.png").read_bytes()
    saved = docs_image("seal-example.png", out.getvalue())
    assert saved.read_bytes() == out.getvalue() and _ink(sheet)[0] > 0
    if not os.environ.get(DOCS_IMAGES_ENV):
        assert (DOCS / "seal-example.png").read_bytes() == before, "a test run rewrote docs/"


def test_docs_images_reach_the_tree_only_when_asked(
    docs_image: Callable[[str, bytes], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "docs"
    target.mkdir()
    monkeypatch.delenv(DOCS_IMAGES_ENV, raising=False)
    assert docs_image("a.png", b"one") == tmp_path / "a.png"
    assert list(target.iterdir()) == []
    monkeypatch.setenv(DOCS_IMAGES_ENV, str(target))
    docs_image("a.png", b"two")
    assert (target / "a.png").read_bytes() == (tmp_path / "a.png").read_bytes() == b"two"
