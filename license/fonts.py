"""The licence text font: WenQuanYi Micro Hei, found (:func:`font_path`), measured and subset.

The subset is built here, not with ``fontTools.subset`` (≈200 ms per call, ~600 ms per
character set): the font's raw tables are read once per process. A licence's subset
(:meth:`Font.compact_subset`) renumbers the glyphs drawn from 1 in the font's order (.notdef 0,
composites' component ids rewritten), so it holds only those glyphs: ~34 kB, about 0.6 ms to
build. The PDF writer draws its text in those new ids and embeds the subset as a
``CIDFontType2`` with ``CIDToGIDMap /Identity`` (the CID is the subset's glyph id); its
``ToUnicode`` map gives the text back.

OFD text is Unicode and its readers look glyphs up through the font's own cmap, so the OFD
writer's subset (:meth:`Font.cmap_subset`) is the compact subset plus a ``cmap`` of the
characters drawn (Windows Unicode BMP, format 4, and full repertoire, format 12), the font's
``name`` and ``OS/2`` tables and a ``post`` table without glyph names.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import struct
import subprocess
import sys
from array import array
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from seal.errors import InvalidSealRequest

FONT_ENV = "GOVTRUST_SEAL_FONT"  # the environment's name of the ``seal_font`` setting
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
)
_LITTLE_ENDIAN = sys.byteorder == "little"


_configured_font = ""  # the ``seal_font`` setting (see configure_font)


def configure_font(path: str | None) -> None:
    """Use the font file the ``seal_font`` setting names (``GOVTRUST_SEAL_FONT``, TOML, flag;
    set by the licence runtime), or none: find WenQuanYi Micro Hei. The font is process-wide."""
    global _configured_font
    if (path or "") != _configured_font:
        _configured_font = path or ""
        font_path.cache_clear()
        licence_font.cache_clear()


@functools.lru_cache(maxsize=1)
def font_path() -> str:
    """The licence text font's file: the ``seal_font`` setting (:func:`configure_font`) or
    WenQuanYi Micro Hei (fonts-wqy-microhei). Seal faces use :func:`seal.images.seal_font`."""
    if _configured_font:
        return _configured_font
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
        "no CJK font found: install fonts-wqy-microhei or set seal_font (GOVTRUST_SEAL_FONT)"
    )


class Font:
    """The CJK font's raw tables, read once; builds glyph-id-preserving TrueType subsets."""

    def __init__(self, path: str) -> None:
        from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

        font = TTFont(path, fontNumber=0, lazy=True)
        self.cmap: dict[int, int] = {
            code: font.getGlyphID(name) for code, name in font.getBestCmap().items()
        }
        raw = {tag: bytes(font.reader[tag]) for tag in font.reader.keys()}  # noqa: SIM118
        head = raw["head"]
        self.upm: int = struct.unpack(">H", head[18:20])[0]
        self.bbox = struct.unpack(">hhhh", head[36:44])
        long_loca = struct.unpack(">h", head[50:52])[0] == 1
        self.num_glyphs = struct.unpack(">H", raw["maxp"][4:6])[0]
        hhea = raw["hhea"]
        self.ascent, self.descent = struct.unpack(">hh", hhea[4:8])
        self.num_hmetrics = struct.unpack(">H", hhea[34:36])[0]
        loca = array(
            "I" if long_loca else "H",
            raw["loca"][: (self.num_glyphs + 1) * (4 if long_loca else 2)],
        )
        if _LITTLE_ENDIAN:
            loca.byteswap()
        self.loca = [v if long_loca else v * 2 for v in loca]
        self.glyf = raw["glyf"]
        self.hmtx = raw["hmtx"]
        advances = array("H", self.hmtx[: 4 * self.num_hmetrics])
        if _LITTLE_ENDIAN:
            advances.byteswap()
        last = advances[2 * (self.num_hmetrics - 1)]
        self.advances = [advances[2 * i] for i in range(self.num_hmetrics)]
        self.advances += [last] * (self.num_glyphs - self.num_hmetrics)
        self.head = head
        self.hhea = hhea
        self.maxp = raw["maxp"]
        self.extra = {tag: raw[tag] for tag in ("cvt ", "fpgm", "prep") if tag in raw}
        self.naming = {tag: raw[tag] for tag in ("name", "OS/2") if tag in raw}
        self.post = struct.pack(">I", 0x00030000) + raw["post"][4:32]  # format 3: no names
        # Filled as glyphs and characters are first used (each licence draws mostly the same
        # ones): a glyph's data split around its components' ids, and a character's advance.
        self._split: dict[int, _Split] = {}
        self._char_advances: dict[str, float] = {}
        self._sums = {  # the checksums of the tables copied as they are, by the table
            id(data): (data, _checksum(data))
            for data in (*self.extra.values(), *self.naming.values(), self.post)
        }

    def gid(self, char: str) -> int:
        """The glyph id of ``char`` (0, .notdef, when the font lacks it)."""
        return self.cmap.get(ord(char), 0)

    def advance(self, gid: int) -> float:
        """Advance width of a glyph as a fraction of the em."""
        return float(self.advances[gid]) / self.upm

    def char_advance(self, char: str) -> float:
        """Advance width of ``char``'s glyph as a fraction of the em (remembered per
        character)."""
        found = self._char_advances.get(char)
        if found is None:
            found = self._char_advances[char] = self.advance(self.gid(char))
        return found

    def width(self, text: str) -> float:
        """The sum of ``text``'s advances, as a fraction of the em (the same float, summed in
        the same order, as adding :meth:`advance` of each character's glyph)."""
        advances = self._char_advances
        if not advances.keys() >= set(text):
            for char in text:
                self.char_advance(char)
        return sum(map(advances.__getitem__, text))

    def _glyph(self, gid: int) -> bytes:
        return self.glyf[self.loca[gid] : self.loca[gid + 1]]

    def _parts(self, gid: int) -> _Split:
        """``gid``'s glyph split around its components' glyph ids (remembered per glyph)."""
        found = self._split.get(gid)
        if found is None:
            data = self._glyph(gid)
            padded = data + b"\0" * (-len(data) % 4)
            parts, ids, shifts, start = [], [], [], 0
            blank = bytearray(padded)  # the glyph with its component ids 0, for its checksum
            for at in _component_offsets(data):
                parts.append(data[start : at + 2])
                ids.append(struct.unpack(">H", data[at + 2 : at + 4])[0])
                shifts.append(16 if (at + 2) % 4 == 0 else 0)  # the id's place in its word
                blank[at + 2 : at + 4] = b"\0\0"
                start = at + 4
            parts.append(padded[start:])
            metric = self._metric(gid)
            found = self._split[gid] = _Split(
                tuple(parts),
                tuple(ids),
                len(padded),
                metric,
                _checksum(bytes(blank)),
                tuple(shifts),
                int.from_bytes(metric, "big"),
            )
        return found

    def _closure(self, gids: Iterable[int]) -> set[int]:
        """``gids``, .notdef and every component of a composite among them."""
        keep = {0, *gids}
        todo = list(keep)
        while todo:
            for component in self._parts(todo.pop()).components:
                if component not in keep and component < self.num_glyphs:
                    keep.add(component)
                    todo.append(component)
        return keep

    def _metric(self, gid: int) -> bytes:
        """The (advance, left side bearing) of ``gid`` as a long ``hmtx`` entry."""
        if gid < self.num_hmetrics:
            return self.hmtx[4 * gid : 4 * gid + 4]
        at = 4 * self.num_hmetrics + 2 * (gid - self.num_hmetrics)
        return struct.pack(">H", self.advances[gid]) + self.hmtx[at : at + 2]

    def renumbering(self, gids: Iterable[int]) -> dict[int, int]:
        """Glyph id → its id in a compact subset: ``gids``, .notdef (0) and every component of a
        composite among them, numbered from 0 in the font's order."""
        return {gid: index for index, gid in enumerate(sorted(self._closure(gids)))}

    def compact_subset(
        self, new_id: Mapping[int, int], tables: Mapping[str, bytes] | None = None
    ) -> bytes:
        """A TrueType font of the glyphs of ``new_id`` (from :meth:`renumbering`) under their new
        ids (composites' component ids rewritten), every glyph a long metric, plus ``tables``.
        Only the glyphs drawn are in the file (tens of kB, not the ``loca`` and ``hmtx`` of every
        glyph up to the last one used, as :meth:`subset` does)."""
        order = sorted(new_id, key=new_id.__getitem__)
        count = len(order)
        pieces: list[bytes] = []
        metrics: list[bytes] = []
        loca = array("I", [0]) * (count + 1)
        length = glyf_sum = hmtx_sum = 0
        for index, gid in enumerate(order):
            split = self._parts(gid)
            parts = split.parts
            pieces.append(parts[0])
            glyf_sum += split.checksum
            rest = zip(split.components, parts[1:], split.shifts, strict=True)
            for component, part, shift in rest:
                new = new_id.get(component, 0)
                pieces.append(new.to_bytes(2, "big"))
                pieces.append(part)
                glyf_sum += new << shift
            length += split.size
            loca[index + 1] = length
            metrics.append(split.metric)
            hmtx_sum += split.metric_sum
        glyf = b"".join(pieces)
        if _LITTLE_ENDIAN:
            loca.byteswap()
        head = bytearray(self.head)
        head[8:12] = b"\0\0\0\0"
        head[50:52] = struct.pack(">h", 1)  # long loca offsets
        hhea = bytearray(self.hhea)
        hhea[34:36] = struct.pack(">H", count)  # every glyph a long metric
        maxp = bytearray(self.maxp)
        maxp[4:6] = struct.pack(">H", count)
        copied = {**self.extra, **(tables or {})}
        sums = {  # this font's own tables, whose sums are known (the very same bytes object)
            tag: known[1]
            for tag, data in copied.items()
            if (known := self._sums.get(id(data))) is not None and known[0] is data
        }
        return _sfnt(
            {
                **copied,
                "glyf": bytes(glyf),
                "head": bytes(head),
                "hhea": bytes(hhea),
                "hmtx": b"".join(metrics),
                "loca": loca.tobytes(),
                "maxp": bytes(maxp),
            },
            # every glyph starts on a 4-byte boundary and each metric is one word: the tables'
            # sums are their glyphs' and metrics' sums (a Python sum over the ~7,000 words of
            # the glyf table took longer than building the whole subset)
            {**sums, "glyf": glyf_sum & 0xFFFFFFFF, "hmtx": hmtx_sum & 0xFFFFFFFF},
        )

    def cmap_subset(self, chars: Iterable[str]) -> bytes:
        """A TrueType font of the glyphs of ``chars`` (and their components) renumbered from 1
        in the font's order (.notdef 0), with a ``cmap`` mapping the characters to them
        (characters the font lacks are left out), ``name``, ``OS/2`` and ``post`` (format 3):
        :meth:`compact_subset` with those tables."""
        mapping = {ord(c): self.cmap[ord(c)] for c in set(chars) if ord(c) in self.cmap}
        new_id = self.renumbering(mapping.values())
        return self.compact_subset(
            new_id,
            {
                **self.naming,
                "post": self.post,
                "cmap": _cmap({code: new_id[gid] for code, gid in mapping.items()}),
            },
        )


class _Split(NamedTuple):
    """A glyph's data cut around its components' glyph ids (``parts``: one more than
    ``components``; the last padded to 4 bytes), its padded size and its long metric, and
    what their checksums need."""

    parts: tuple[bytes, ...]
    components: tuple[int, ...]
    size: int
    metric: bytes
    checksum: int  # of the padded glyph with its components' ids 0
    shifts: tuple[int, ...]  # per component: 16 if its id is a word's high half, else 0
    metric_sum: int  # the metric as a word


def _component_offsets(data: bytes) -> list[int]:
    """Where each component record (flags, glyph id, ...) of a composite glyph starts; empty
    for a simple or empty glyph."""
    if len(data) < 10 or struct.unpack(">h", data[:2])[0] >= 0:
        return []
    out, at = [], 10
    while at + 4 <= len(data):
        flags = struct.unpack(">H", data[at : at + 2])[0]
        out.append(at)
        at += 4 + (4 if flags & 0x0001 else 2)
        if flags & 0x0008:
            at += 2
        elif flags & 0x0040:
            at += 4
        elif flags & 0x0080:
            at += 8
        if not flags & 0x0020:
            break
    return out


def _cmap(mapping: Mapping[int, int]) -> bytes:
    """A ``cmap`` table of ``mapping`` (code point → glyph id): (3, 1) format 4 for the BMP
    (one segment per character) and (3, 10) format 12 for all."""
    codes = sorted(mapping)
    bmp = [c for c in codes if c < 0xFFFF]
    seg_count = len(bmp) + 1
    search = 2 ** int(math.log2(seg_count))
    ends = [*bmp, 0xFFFF]
    deltas = [(mapping[c] - c) & 0xFFFF for c in bmp] + [1]
    four = struct.pack(
        f">HHHHHHH{seg_count}HH{seg_count}H{seg_count}H{seg_count}H",
        4,
        16 + 8 * seg_count,
        0,
        2 * seg_count,
        2 * search,
        int(math.log2(search)),
        2 * seg_count - 2 * search,
        *ends,
        0,
        *ends,
        *deltas,
        *([0] * seg_count),
    )
    groups = b"".join(struct.pack(">III", c, c, mapping[c]) for c in codes)
    twelve = struct.pack(">HHIII", 12, 0, 16 + len(groups), 0, len(codes)) + groups
    header = struct.pack(">HHHHIHHI", 0, 2, 3, 1, 20, 3, 10, 20 + len(four))
    return header + four + twelve


def _checksum(data: bytes) -> int:
    words = array("I", data + b"\0" * (-len(data) % 4))
    if _LITTLE_ENDIAN:
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


def _sfnt(tables: Mapping[str, bytes], sums: Mapping[str, int] | None = None) -> bytes:
    """An sfnt file from its tables (directory, checksums, head checkSumAdjustment); ``sums``:
    the checksums of some tables, known already."""
    sums = sums or {}
    tags = sorted(tables)
    count = len(tags)
    power = 2 ** int(math.log2(count))
    header = struct.pack(
        ">IHHHH", 0x00010000, count, power * 16, int(math.log2(power)), count * 16 - power * 16
    )
    offset = 12 + 16 * count
    directory, body = bytearray(), bytearray()
    total = 0
    head_at = 0
    for tag in tags:
        data = tables[tag]
        checksum = sums[tag] if tag in sums else _checksum(data)
        total += checksum
        if tag == "head":
            head_at = offset + len(body)
        directory += struct.pack(
            ">4sIII", tag.encode("latin-1"), checksum, offset + len(body), len(data)
        )
        body += data + b"\0" * (-len(data) % 4)
    out = bytearray(header + directory + body)
    # the whole font's sum is the directory's plus every (padded) table's
    adjustment = (0xB1B0AFBA - _checksum(bytes(header + directory)) - total) & 0xFFFFFFFF
    out[head_at + 8 : head_at + 12] = struct.pack(">I", adjustment)
    return bytes(out)


@functools.lru_cache(maxsize=1)
def licence_font() -> Font:
    """The process-wide licence text font."""
    return Font(font_path())


def cmap_subset(chars: Iterable[str]) -> bytes:
    """A subset of the licence font drawing ``chars`` with a cmap (for OFD): see
    :meth:`Font.cmap_subset`."""
    return licence_font().cmap_subset(chars)
