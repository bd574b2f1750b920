"""The licence text font: found by the environment override, subset with glyphs renumbered."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from govtrust.config import load_settings
from license.fonts import FONT_ENV, cmap_subset, configure_font, font_path, licence_font


@pytest.fixture
def fresh_font_path() -> Iterator[None]:
    font_path.cache_clear()
    yield
    font_path.cache_clear()


def test_the_environment_names_the_licence_font(
    fresh_font_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FONT_ENV, "/srv/fonts/other.ttc")
    configure_font(load_settings().seal_font)  # as the licence runtime does
    assert font_path() == "/srv/fonts/other.ttc"
    monkeypatch.delenv(FONT_ENV)
    configure_font(load_settings().seal_font)
    assert font_path() != "/srv/fonts/other.ttc"


def test_a_cmap_subset_maps_each_character_to_its_glyph() -> None:
    """The OFD subset: the characters (BMP and beyond) map through its own cmap to glyphs
    renumbered in the font's order, drawn with the font's outlines and advances, and nothing
    else is kept; a character the font lacks is left out; the file's checksum adjustment is
    right; the same characters in any order give the same bytes."""
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    font = licence_font()
    text = "营业执照 ABC，长沙示例贸易有限公司"
    missing = "\U0002a6a5"  # a CJK Extension B character the font lacks
    assert font.gid(missing) == 0
    data = cmap_subset(text + missing)
    subset = TTFont(io.BytesIO(data))
    order = subset.getGlyphOrder()
    for table in subset["cmap"].tables:
        assert (table.platformID, table.platEncID) in {(3, 1), (3, 10)}
        assert set(table.cmap) == {ord(c) for c in text}
    original = TTFont(font_path(), fontNumber=0, lazy=True)
    new_ids = {c: order.index(subset.getBestCmap()[ord(c)]) for c in text}
    assert sorted(new_ids.values()) == [new_ids[c] for c in sorted(text, key=font.gid)]
    assert len(order) < 3 * len(set(text))  # .notdef, the glyphs drawn and their components
    glyf = subset["glyf"]
    for c in text:
        name = subset.getBestCmap()[ord(c)]
        assert subset["hmtx"][name] == original["hmtx"][original.getBestCmap()[ord(c)]]
        if c != " ":
            mine, theirs = glyf[name], original["glyf"][original.getBestCmap()[ord(c)]]
            assert mine.numberOfContours == theirs.numberOfContours != 0
            assert mine.getCoordinates(glyf)[0] == theirs.getCoordinates(original["glyf"])[0]
    assert len(data) < 20_000
    assert int.from_bytes(data[:4]) == 0x00010000
    words = data + b"\0" * (-len(data) % 4)
    total = sum(int.from_bytes(words[i : i + 4]) for i in range(0, len(words), 4))
    assert total & 0xFFFFFFFF == 0xB1B0AFBA
    assert cmap_subset(reversed(text)) == cmap_subset(text)
    assert subset["post"].formatType == 3.0
    assert "WenQuanYi" in subset["name"].getDebugName(1)


def test_a_compact_subset_draws_each_glyph_under_its_new_id() -> None:
    """The PDF subset: the glyphs drawn (and .notdef) renumbered from 0 in the font's order,
    each with the font's outline and advance under its new id, nothing else kept."""
    from fontTools.ttLib import TTFont

    font = licence_font()
    text = "营业执照 ABC，福州示例科技有限公司"
    new_id = font.renumbering(font.gid(c) for c in text)
    assert new_id[0] == 0
    assert sorted(new_id.values()) == list(range(len(new_id)))
    assert [new_id[g] for g in sorted(new_id)] == sorted(new_id.values())  # the font's order
    subset = TTFont(io.BytesIO(font.compact_subset(new_id)))
    original = TTFont(font_path(), fontNumber=0, lazy=True)
    order, theirs = subset.getGlyphOrder(), original.getGlyphOrder()
    assert len(order) == len(new_id)
    for c in set(text):
        gid = font.gid(c)
        mine = order[new_id[gid]]
        assert subset["hmtx"][mine][0] / font.upm == font.advance(gid)
        if c != " ":
            glyph, source = subset["glyf"][mine], original["glyf"][theirs[gid]]
            assert glyph.numberOfContours == source.numberOfContours != 0
            assert (
                glyph.getCoordinates(subset["glyf"])[0]
                == source.getCoordinates(original["glyf"])[0]
            )


def _word_sum(data: bytes) -> int:
    words = data + b"\0" * (-len(data) % 4)
    return sum(int.from_bytes(words[i : i + 4]) for i in range(0, len(words), 4)) & 0xFFFFFFFF


@pytest.mark.parametrize(
    "text", ["营业执照 ABC，福州示例科技有限公司", "鑫淼焱垚犇骉龘 ⼀一丨（）《》"]
)
def test_a_subset_s_table_checksums_are_those_of_its_bytes(text: str) -> None:
    """The glyf and hmtx checksums are added up from each glyph's (remembered per glyph, its
    components' new ids added in place) and the font's own tables' are known: each table's
    directory entry still holds the sum of its bytes, the first time and every time after, for
    the PDF and the OFD subset."""
    import struct

    font = licence_font()
    new_id = font.renumbering(font.gid(c) for c in text)
    assert any(font._parts(gid).components for gid in new_id)  # composites among them
    for data in (font.compact_subset(new_id), font.compact_subset(new_id), cmap_subset(text)):
        count = struct.unpack(">H", data[4:6])[0]
        tags = set()
        for i in range(count):
            tag, checksum, offset, length = struct.unpack(">4sIII", data[12 + 16 * i : 28 + 16 * i])
            table = bytearray(data[offset : offset + length])
            if tag == b"head":
                table[8:12] = b"\0\0\0\0"  # the adjustment is left out of head's own sum
            assert checksum == _word_sum(bytes(table)), tag
            tags.add(tag)
        assert {b"glyf", b"hmtx", b"loca", b"head"} <= tags
        assert _word_sum(data) == 0xB1B0AFBA


def test_text_widths_are_the_sums_of_the_glyph_advances() -> None:
    """A text's width (remembered per character) is the same float as adding its glyphs'
    advances in order, characters the font lacks included."""
    from license.layout import text_width

    font = licence_font()
    for text in ("营业执照 ABC，福州", "\U0002a6a5x", "", "一" * 50):
        expected = sum(font.advance(font.gid(c)) for c in text) * 10.5
        assert text_width(text, 10.5) == expected
        assert text_width(text, 10.5) == expected
