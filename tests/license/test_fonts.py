"""The licence text font: found by the environment override, subset with glyph ids kept."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from license.fonts import FONT_ENV, font_path, licence_font


@pytest.fixture
def fresh_font_path() -> Iterator[None]:
    font_path.cache_clear()
    yield
    font_path.cache_clear()


def test_the_environment_names_the_licence_font(
    fresh_font_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FONT_ENV, "/srv/fonts/other.ttc")
    assert font_path() == "/srv/fonts/other.ttc"
    monkeypatch.delenv(FONT_ENV)
    font_path.cache_clear()
    assert font_path() != "/srv/fonts/other.ttc"


def test_a_subset_keeps_glyph_ids_and_draws_only_the_used_glyphs() -> None:
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    font = licence_font()
    used = {font.gid(c) for c in "营业执照 ABC"}
    assert 0 not in used
    subset = TTFont(io.BytesIO(font.subset(used)))
    order = subset.getGlyphOrder()
    glyf = subset["glyf"]
    drawn = {gid for gid, name in enumerate(order) if glyf[name].numberOfContours != 0}
    assert used - {font.gid(" ")} <= drawn
    assert len(drawn) < 3 * len(used)  # the glyphs and their components, not the whole font
    assert len(order) == max(drawn) + 1 < font.num_glyphs  # nothing after the last one drawn
    for gid in used:
        assert subset["hmtx"][order[gid]][0] / font.upm == font.advance(gid)
