"""The licence document: a one-page PDF rendered from the licence type's layout, sealed (PAdES B-T).

:meth:`LicenceDocuments.render` writes the PDF directly (no PDF library): the title, the holder's
``KZ_*`` fields with the labels of the type's field schema, the issuing department and date, a
QR code of the public verification URL and one of the offline payload (``GT1:…``, alphanumeric
mode, labelled 离线核验码), all as real text in an embedded subset of the CJK font
(WenQuanYi Micro Hei, ``Type0``/``CIDFontType2`` with a ``ToUnicode`` map, so the text can be
searched and extracted) and vector QR modules. The signed licence data (compact JWS) and the QR
payload are embedded files (``licence.jws``, ``licence-qr.txt``; EmbeddedFiles name tree and
``/AF``), and the CA hierarchy's certificates but the root go in ``/DSS /Certs`` (the
time-stamp token carries only the TSA's certificate), so the PDF alone can be checked offline
with only the root (:mod:`license.document_check`).

:meth:`LicenceDocuments.make` then seals it with the department's official seal through
:meth:`seal.pdf.SealPdf.sign` at B-T: the seal picture is the visible signature's appearance at
the layout's seal area (the unsealed rendering leaves that area blank on purpose, so a copy
that was never sealed never shows a seal). A classic cross-reference table keeps the seal on the
seal service's fast path (:mod:`seal.fastpdf`).

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

The font subset is built here, not with ``fontTools.subset`` (≈200 ms per call): the font's
raw tables are read once per process and a subset keeps the glyph ids (unused glyphs empty,
which compresses to almost nothing), so no glyph or composite has to be renumbered. QR masks
are chosen by :func:`qr_matrix` (segno's own mask evaluation costs ~25 ms per symbol).
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import math
import re
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import segno

from govtrust.errors import ResourceExhausted
from govtrust.pdf_guard import check_structure, reading_limits
from license.catalogue import LicenceType
from license.errors import LicenceVerificationFailed, Reason
from license.signed_data import LONG_TERM, LicenceMetadata
from seal import images
from seal.lifecycle import UseContext
from seal.pdf import PdfSealRequest, Position, SealPdf, design_of
from seal.types import PadesLevel, SealView

PT_PER_MM = 72 / 25.4
_LITTLE_ENDIAN = sys.byteorder == "little"
JWS_FILE = "licence.jws"
QR_FILE = "licence-qr.txt"  # sorts before JWS_FILE in the name tree
SEAL_FIELD = "LicenceSeal"
DOCUMENT_KIND = "licence"
MAX_EMBEDDED_BYTES = 256 * 1024
_PAGES = {"A4-landscape": (297.0, 210.0), "A4-portrait": (210.0, 297.0)}
_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
_FRAME = (0.62, 0.16, 0.12)  # border colour (RGB)
_LABEL = (0.25, 0.25, 0.25)
_NO_LINE_START = frozenset("，。、；：？！）》」』】〕”’…,.;:?!)]}%")  # hang at the line end


@dataclass(frozen=True)
class DocumentInput:
    """What a licence document shows and embeds."""

    licence_type: LicenceType
    metadata: LicenceMetadata
    signed_data: str
    qr_payload: str
    verify_url: str


@dataclass(frozen=True)
class EmbeddedLicence:
    """The licence artefacts embedded in a licence PDF."""

    signed_data: str
    qr_payload: str


# --- font subset --------------------------------------------------------------------------------


class _Font:
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

    def gid(self, char: str) -> int:
        """The glyph id of ``char`` (0, .notdef, when the font lacks it)."""
        return self.cmap.get(ord(char), 0)

    def advance(self, gid: int) -> float:
        """Advance width of a glyph as a fraction of the em."""
        return float(self.advances[gid]) / self.upm

    def _glyph(self, gid: int) -> bytes:
        return self.glyf[self.loca[gid] : self.loca[gid + 1]]

    def _components(self, data: bytes) -> list[int]:
        """Glyph ids a composite glyph refers to."""
        if len(data) < 10 or struct.unpack(">h", data[:2])[0] >= 0:
            return []
        out, at = [], 10
        while at + 4 <= len(data):
            flags, gid = struct.unpack(">HH", data[at : at + 4])
            out.append(gid)
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

    def subset(self, gids: Iterable[int]) -> bytes:
        """A TrueType font with only ``gids`` (and their components) drawn; ids unchanged."""
        keep = {0, *gids}
        todo = list(keep)
        while todo:
            for component in self._components(self._glyph(todo.pop())):
                if component not in keep and component < self.num_glyphs:
                    keep.add(component)
                    todo.append(component)
        count = max(keep) + 1  # glyphs after the last one used are dropped
        glyf = bytearray()
        loca = array("I", [0]) * (count + 1)
        previous = 0
        for gid in sorted(keep):
            loca[previous + 1 : gid + 1] = array("I", [len(glyf)]) * (gid - previous)
            glyf += self._glyph(gid)
            glyf += b"\0" * (-len(glyf) % 4)
            previous = gid + 1
            loca[gid + 1] = len(glyf)
        if _LITTLE_ENDIAN:
            loca.byteswap()
        long_metrics = min(self.num_hmetrics, count)
        hmtx = bytearray(4 * long_metrics + 2 * (count - long_metrics))
        for gid in keep:
            at = 4 * gid if gid < long_metrics else 4 * long_metrics + 2 * (gid - long_metrics)
            size = 4 if gid < long_metrics else 2
            hmtx[at : at + size] = self.hmtx[at : at + size]
        head = bytearray(self.head)
        head[8:12] = b"\0\0\0\0"
        head[50:52] = struct.pack(">h", 1)  # long loca offsets
        hhea = bytearray(self.hhea)
        hhea[34:36] = struct.pack(">H", long_metrics)
        maxp = bytearray(self.maxp)
        maxp[4:6] = struct.pack(">H", count)
        tables = {
            **self.extra,
            "glyf": bytes(glyf),
            "head": bytes(head),
            "hhea": bytes(hhea),
            "hmtx": bytes(hmtx),
            "loca": loca.tobytes(),
            "maxp": bytes(maxp),
        }
        return _sfnt(tables)


def _checksum(data: bytes) -> int:
    words = array("I", data + b"\0" * (-len(data) % 4))
    if _LITTLE_ENDIAN:
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


def _sfnt(tables: Mapping[str, bytes]) -> bytes:
    """An sfnt file from its tables (directory, checksums, head checkSumAdjustment)."""
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
        checksum = _checksum(data)
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
def _font() -> _Font:
    return _Font(images.font_path())


# --- QR codes -----------------------------------------------------------------------------------
#
# segno evaluates the eight data masks (ISO/IEC 18004 7.8.3) with per-module Python calls, about
# 25 ms for a version-12 symbol; here the candidates are derived from one encoding (mask 0) as
# row bitsets and scored with the same four penalty rules, then segno encodes the chosen mask.

_MASKS: tuple[Any, ...] = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i + j) % 2 + (i * j) % 3) % 2 == 0,
)
_RUN = re.compile(r"0{5,}|1{5,}")
_DARK = re.compile(r"1+")


def _bits(cells: Iterable[bool | int]) -> int:
    value = 0
    for cell in cells:
        value = value << 1 | bool(cell)
    return value


@functools.lru_cache(maxsize=64)
def _qr_geometry(version: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(rows of the encoding region, rows of each mask pattern) as bitsets, column 0 first."""
    n = 17 + 4 * version
    function = [[False] * n for _ in range(n)]

    def block(r0: int, c0: int, rows: int, cols: int) -> None:
        for r in range(max(r0, 0), min(r0 + rows, n)):
            for c in range(max(c0, 0), min(c0 + cols, n)):
                function[r][c] = True

    block(0, 0, 9, 9)  # finder, separator and format information, top left
    block(0, n - 8, 9, 8)
    block(n - 8, 0, 8, 9)  # includes the dark module
    block(6, 0, 1, n)  # timing patterns
    block(0, 6, n, 1)
    if version >= 2:
        count = version // 7 + 2
        step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
        centres = [6, *sorted(n - 7 - i * step for i in range(count - 1))]
        for r in centres:
            for c in centres:
                if (r, c) not in ((6, 6), (6, n - 7), (n - 7, 6)):
                    block(r - 2, c - 2, 5, 5)
    if version >= 7:
        block(0, n - 11, 6, 3)  # version information
        block(n - 11, 0, 3, 6)
    region = tuple(_bits(not f for f in row) for row in function)
    masks = tuple(tuple(_bits(mask(i, j) for j in range(n)) for i in range(n)) for mask in _MASKS)
    return region, masks


def _penalty(rows: Sequence[int], n: int) -> int:
    """The ISO/IEC 18004 penalty (N1 runs, N2 blocks, N3 finder-like, N4 balance)."""
    lines = [format(r, f"0{n}b") for r in rows]
    lines += ["".join(column) for column in zip(*lines, strict=True)]
    runs = _RUN.findall("|".join(lines))
    score = sum(len(run) for run in runs) - 2 * len(runs)
    score += 40 * sum(line.count("10111010000") + line.count("00001011101") for line in lines)
    full = (1 << (n - 1)) - 1
    for upper, lower in itertools.pairwise(rows):
        dark = upper & lower & (upper >> 1) & (lower >> 1)
        light = ~(upper | lower | (upper >> 1) | (lower >> 1)) & full
        score += 3 * ((dark & full).bit_count() + light.bit_count())
    dark_modules = sum(r.bit_count() for r in rows)
    score += 10 * (abs(dark_modules * 100 // (n * n) - 50) // 5)
    return score


def _format_bits(mask: int) -> int:
    """The 15-bit format information for error correction level M and ``mask``."""
    data = mask  # level M is 00
    rem = data
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    return (data << 10 | rem) ^ 0x5412


def _format_cells(n: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(row, column) of both copies of each format information bit, bit 0 first."""
    first = (
        [(i, 8) for i in range(6)] + [(7, 8), (8, 8), (8, 7)] + [(8, 14 - i) for i in range(9, 15)]
    )
    second = [(8, n - 1 - i) for i in range(8)] + [(n - 15 + i, 8) for i in range(8, 15)]
    return list(zip(first, second, strict=True))


def qr_matrix(data: str, *, alphanumeric: bool) -> list[str]:
    """The module rows ("1" = dark, no quiet zone) of a QR code of ``data`` at error correction
    level M, with the mask of lowest penalty."""
    base = segno.make_qr(data, error="m", mode="alphanumeric" if alphanumeric else None, mask=0)
    version = int(base.version)
    n = 17 + 4 * version
    region, masks = _qr_geometry(version)
    rows0 = [_bits(row) for row in base.matrix]
    best: tuple[int, list[int]] | None = None
    for k in range(8):
        flip = [(m0 ^ mk) & g for m0, mk, g in zip(masks[0], masks[k], region, strict=True)]
        candidate = [r ^ f for r, f in zip(rows0, flip, strict=True)]
        score = _penalty(candidate, n)
        if best is None or score < best[0]:
            best = (score, candidate)
            chosen = k
    assert best is not None
    rows = best[1]
    changed = _format_bits(0) ^ _format_bits(chosen)
    for bit, cells in enumerate(_format_cells(n)):
        if changed >> bit & 1:
            for r, c in cells:
                rows[r] ^= 1 << (n - 1 - c)
    return [format(row, f"0{n}b") for row in rows]


# --- text layout --------------------------------------------------------------------------------


def text_width(text: str, size: float) -> float:
    """Width of ``text`` at ``size`` points, in points."""
    font = _font()
    return sum(font.advance(font.gid(c)) for c in text) * size


def wrap(text: str, size: float, width: float) -> list[str]:
    """Lines of ``text`` no wider than ``width`` points (CJK breaks anywhere; explicit newlines
    are kept; a Latin word is not split when it fits on the next line)."""
    font = _font()
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for char in paragraph:
            advance = font.advance(font.gid(char)) * size
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


class _Canvas:
    """A page content stream in millimetres from the top-left corner; records used glyphs."""

    def __init__(self, width_mm: float, height_mm: float) -> None:
        self.width_mm, self.height_mm = width_mm, height_mm
        self.ops: list[str] = []
        self.gids: dict[int, str] = {}
        self.font = _font()

    def _y(self, y_mm: float) -> float:
        return (self.height_mm - y_mm) * PT_PER_MM

    def text(
        self,
        text: str,
        x_mm: float,
        baseline_mm: float,
        size: float,
        *,
        colour: tuple[float, float, float] = (0, 0, 0),
        spacing: float = 0.0,
        align: str = "left",
    ) -> None:
        """One line of text; ``x_mm`` is its left edge, centre or right edge by ``align``."""
        if not text:
            return
        width = text_width(text, size) + spacing * (len(text) - 1)
        x = x_mm * PT_PER_MM
        if align == "centre":
            x -= width / 2
        elif align == "right":
            x -= width
        codes = []
        for char in text:
            gid = self.font.gid(char)
            if gid:
                self.gids.setdefault(gid, char)
            codes.append(f"{gid:04x}")
        r, g, b = colour
        self.ops.append(
            f"BT {r:.3f} {g:.3f} {b:.3f} rg /F1 {size:.2f} Tf {spacing:.3f} Tc "
            f"1 0 0 1 {x:.2f} {self._y(baseline_mm):.2f} Tm <{''.join(codes)}> Tj ET"
        )

    def rect(
        self, x_mm: float, y_mm: float, w_mm: float, h_mm: float, line: float,
        colour: tuple[float, float, float],
    ) -> None:  # fmt: skip
        """A stroked rectangle (top-left corner, size)."""
        r, g, b = colour
        self.ops.append(
            f"q {r:.3f} {g:.3f} {b:.3f} RG {line:.2f} w {x_mm * PT_PER_MM:.2f} "
            f"{self._y(y_mm + h_mm):.2f} {w_mm * PT_PER_MM:.2f} {h_mm * PT_PER_MM:.2f} re S Q"
        )

    def qr(
        self, data: str, x_mm: float, y_mm: float, size_mm: float, *, alphanumeric: bool
    ) -> None:
        """A QR code (with its quiet zone) filling a square of ``size_mm`` at (x, y)."""
        if not data:
            return
        matrix = qr_matrix(data, alphanumeric=alphanumeric)
        n = len(matrix)
        module = size_mm * PT_PER_MM / (n + 8)
        ops = [
            f"q 1 g {x_mm * PT_PER_MM:.2f} {self._y(y_mm + size_mm):.2f} "
            f"{size_mm * PT_PER_MM:.2f} {size_mm * PT_PER_MM:.2f} re f 0 g",
            f"{module:.4f} 0 0 {module:.4f} {x_mm * PT_PER_MM + 4 * module:.3f} "
            f"{self._y(y_mm + size_mm) + 4 * module:.3f} cm",
        ]
        for r, row in enumerate(matrix):
            y = n - 1 - r
            ops += [f"{m.start()} {y} {m.end() - m.start()} 1 re" for m in _DARK.finditer(row)]
        ops.append("f Q")
        self.ops.append("\n".join(ops))

    def content(self) -> bytes:
        return "\n".join(self.ops).encode("ascii")


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


def _draw(doc: DocumentInput, seal: SealView) -> tuple[_Canvas, PageLayout]:
    meta = doc.metadata
    seal_w, seal_h = design_of(seal).size_mm()
    lay = resolve_layout(doc.licence_type, meta.fields, max(seal_w, seal_h))
    page = _Canvas(lay.width_mm, lay.height_mm)
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
    return page, lay


def _fields(
    page: _Canvas,
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


# --- PDF file -----------------------------------------------------------------------------------


def _pdf_text(text: str) -> bytes:
    if text.isascii():
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return f"({escaped})".encode("latin-1")
    return b"<feff" + text.encode("utf-16-be").hex().encode() + b">"


def _stream(dictionary: bytes, data: bytes, *, compress: bool = True, level: int = 6) -> bytes:
    if compress:
        data = zlib.compress(data, level)
        dictionary += b"/Filter/FlateDecode"
    return b"<<" + dictionary + b"/Length %d>>\nstream\n" % len(data) + data + b"\nendstream"


def _to_unicode(gids: Mapping[int, str]) -> bytes:
    entries = sorted(gids.items())
    lines = [
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
        "1 begincodespacerange <0000> <FFFF> endcodespacerange",
    ]
    for start in range(0, len(entries), 100):
        chunk = entries[start : start + 100]
        lines.append(f"{len(chunk)} beginbfchar")
        lines += [f"<{gid:04x}> <{char.encode('utf-16-be').hex()}>" for gid, char in chunk]
        lines.append("endbfchar")
    lines.append("endcmap CMapName currentdict /CMap defineresource pop end end")
    return "\n".join(lines).encode("ascii")


def _pdf_date(moment: datetime) -> bytes:
    return moment.astimezone(UTC).strftime("(D:%Y%m%d%H%M%S+00'00')").encode()


def _assemble(page: _Canvas, doc: DocumentInput, certificates: Sequence[bytes] = ()) -> bytes:
    """The PDF file: catalog, page, font, embedded files, info, and ``certificates`` (the CA
    hierarchy: the time-stamp's chain for offline checking) in the /DSS; classic xref table."""
    font = page.font
    gids = page.gids
    tag = "".join(
        chr(65 + b % 26) for b in hashlib.sha256(repr(sorted(gids)).encode()).digest()[:6]
    )
    widths = " ".join(f"{gid} [{round(font.advance(gid) * 1000)}]" for gid in sorted(gids))
    scale = 1000 / font.upm
    bbox = " ".join(str(round(v * scale)) for v in font.bbox)
    ascent = font.ascent * scale
    meta = doc.metadata
    now = datetime.now(UTC)
    w_pt, h_pt = page.width_mm * PT_PER_MM, page.height_mm * PT_PER_MM
    name = f"/{tag}+WenQuanYiMicroHei".encode()

    def embedded(data: str, mime: bytes) -> bytes:
        raw = data.encode("ascii")
        return _stream(
            b"/Type/EmbeddedFile/Subtype/"
            + mime
            + b"/Params<</Size %d/ModDate " % len(raw)
            + _pdf_date(now)
            + b">>",
            raw,
            compress=False,
        )

    def filespec(file_name: str, stream_ref: int, description: str) -> bytes:
        return (
            b"<</Type/Filespec/F" + _pdf_text(file_name) + b"/UF" + _pdf_text(file_name)
            + b"/Desc" + _pdf_text(description) + b"/AFRelationship/Data"
            + b"/EF<</F %d 0 R/UF %d 0 R>>>>" % (stream_ref, stream_ref)
        )  # fmt: skip

    objects: list[bytes] = [
        # 1 catalog, 2 pages, 3 page, 4 content, 5 Type0 font, 6 CIDFont, 7 descriptor,
        # 8 font file, 9 ToUnicode, 10 info, 11 names, 12/13 JWS file, 14/15 QR file
        b"<</Type/Catalog/Pages 2 0 R/Names 11 0 R/AF[13 0 R 15 0 R]/PageMode/UseNone"
        + (b"/DSS 16 0 R" if certificates else b"")
        + b"/Lang(zh-CN)/ViewerPreferences<</DisplayDocTitle true>>>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 %.2f %.2f]/Contents 4 0 R" % (w_pt, h_pt)
        + b"/Resources<</Font<</F1 5 0 R>>>>>>",
        _stream(b"", page.content()),
        b"<</Type/Font/Subtype/Type0/BaseFont" + name
        + b"/Encoding/Identity-H/DescendantFonts[6 0 R]/ToUnicode 9 0 R>>",
        b"<</Type/Font/Subtype/CIDFontType2/BaseFont" + name
        + b"/CIDSystemInfo<</Registry(Adobe)/Ordering(Identity)/Supplement 0>>"
        + b"/FontDescriptor 7 0 R/CIDToGIDMap/Identity/DW 1000/W[" + widths.encode() + b"]>>",
        b"<</Type/FontDescriptor/FontName" + name + b"/Flags 4/FontBBox[" + bbox.encode()
        + b"]/ItalicAngle 0/Ascent %d/Descent %d/CapHeight %d/StemV 80/FontFile2 8 0 R>>"
        % (round(font.ascent * scale), round(font.descent * scale), round(ascent * 0.8)),
        _stream(b"", font.subset(gids), level=1),  # mostly empty glyph slots
        _stream(b"", _to_unicode(gids)),
        b"<</Title" + _pdf_text(f"{meta.name} {meta.holder_name}")
        + b"/Subject" + _pdf_text(meta.identifier) + b"/Author" + _pdf_text(meta.issuer_name)
        + b"/Producer(govtrust licence documents)"
        + b"/CreationDate" + _pdf_date(now) + b">>",
        b"<</EmbeddedFiles<</Names["  # keys in lexical order (a name tree is searched)
        + _pdf_text(QR_FILE) + b" 15 0 R " + _pdf_text(JWS_FILE) + b" 13 0 R]>>>>",
        embedded(doc.signed_data, b"application#2Fjose"),
        filespec(JWS_FILE, 12, "签名证照数据 (signed licence data, compact JWS)"),
        embedded(doc.qr_payload, b"text#2Fplain"),
        filespec(QR_FILE, 14, "离线核验码 (offline QR payload)"),
    ]  # fmt: skip
    if certificates:
        first = len(objects) + 2
        refs = " ".join(f"{first + i} 0 R" for i in range(len(certificates)))
        objects.append(b"<</Certs[" + refs.encode() + b"]>>")
        objects += [_stream(b"", der) for der in certificates]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    file_id = hashlib.sha256(doc.signed_data.encode()).digest()[:16].hex().encode()
    out += (
        b"trailer\n<</Size %d/Root 1 0 R/Info 10 0 R/ID[<%s><%s>]>>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, file_id, file_id, xref)
    )
    return bytes(out)


@functools.lru_cache(maxsize=64)
def _self_signed(der: bytes) -> bool:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.issuer == cert.subject


class LicenceDocuments:
    """Renders licence documents and seals them with the issuing department's official seal."""

    def __init__(self, seal_pdf: SealPdf) -> None:
        self.seal_pdf = seal_pdf

    def _certificates(self) -> list[bytes]:
        """The CA hierarchy's certificates but the roots (the TSA's chain is not in its token;
        with these in the document a time-stamp checks offline with only the root)."""
        authority = self.seal_pdf.service.authority
        extra = getattr(authority, "hierarchy_certificates", None)
        ders = list(extra()) if callable(extra) else list(authority.chain())
        return sorted(d for d in set(ders) if not _self_signed(d))

    def render(self, doc: DocumentInput, seal: SealView) -> bytes:
        """The unsealed one-page PDF (the seal area is left for :meth:`make`)."""
        page, _ = _draw(doc, seal)
        return _assemble(page, doc, self._certificates())

    def make(self, doc: DocumentInput, context: UseContext) -> bytes:
        """Render and seal (PAdES B-T) with ``context``'s seal. Does not record the use: the
        caller records it in its own transaction."""
        page, lay = _draw(doc, context.seal)
        pdf = _assemble(page, doc, self._certificates())
        x, y = lay.seal_centre
        sealed, _, _ = self.seal_pdf.sign(
            context,
            PdfSealRequest(
                seal_id=context.seal.id,
                pdf=pdf,
                placement=Position(1, x, y),
                level=PadesLevel.B_T,
                document_kind=DOCUMENT_KIND,
                reason=f"签发电子证照 {doc.metadata.identifier}",
                field_name=SEAL_FIELD,
            ),
        )
        return sealed


# --- reading ------------------------------------------------------------------------------------


def _malformed(why: str) -> LicenceVerificationFailed:
    return LicenceVerificationFailed(Reason.MALFORMED, why)


def embedded_from_root(root: Any) -> EmbeddedLicence:
    """The embedded licence artefacts under a document catalog (pyHanko objects)."""
    try:
        tree = root["/Names"]["/EmbeddedFiles"]
    except (KeyError, TypeError):
        raise _malformed("not a licence document: no embedded licence data") from None
    found: dict[str, str] = {}

    def walk(node: Any, depth: int) -> None:
        if depth > 8:
            raise _malformed("embedded file tree too deep")
        names = node.get("/Names")
        if names is not None:
            for i in range(0, len(names) - 1, 2):
                key = str(names[i])
                if key in (JWS_FILE, QR_FILE) and key not in found:
                    stream = names[i + 1].get_object()["/EF"]["/F"].get_object()
                    data = stream.data
                    if len(data) > MAX_EMBEDDED_BYTES:
                        raise _malformed(f"embedded {key} too large")
                    found[key] = data.decode("ascii").strip()
        for kid in node.get("/Kids", []):
            walk(kid.get_object(), depth + 1)

    try:
        walk(tree.get_object(), 0)
    except LicenceVerificationFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any broken structure is a malformed document
        raise _malformed(f"embedded licence data unreadable: {exc}") from None
    if JWS_FILE not in found:
        raise _malformed(f"not a licence document: no {JWS_FILE}")
    return EmbeddedLicence(found[JWS_FILE], found.get(QR_FILE, ""))


def open_pdf(pdf: bytes) -> Any:
    """pyHanko's reader over ``pdf``; MALFORMED when it is not a readable PDF, DocumentTooComplex
    over the document limits in force (:func:`govtrust.pdf_guard.reading_limits`)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    if not isinstance(pdf, bytes | bytearray) or b"%PDF-" not in bytes(pdf[:1024]):
        raise _malformed("not a PDF document")
    try:
        with reading_limits() as limits:
            reader = PdfFileReader(io.BytesIO(bytes(pdf)), strict=False)
        check_structure(reader, limits)  # before anything walks the revisions
        reader.root  # noqa: B018 - forces the catalog to resolve
    except ResourceExhausted:
        raise  # over a document limit or the request's budget (govtrust.pdf_guard): not MALFORMED
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many types on broken files
        raise _malformed(f"the PDF cannot be read: {exc}") from None
    return reader


def dss_certificates(root: Any, limit: int = 32) -> list[bytes]:
    """DER certificates in a catalog's /DSS /Certs (validation material, not trusted)."""
    try:
        streams = root["/DSS"]["/Certs"]
        return [s.get_object().data for s in list(streams)[:limit]]
    except Exception:  # noqa: BLE001 - absent or broken: no extra certificates
        return []


def sealed_root(reader: Any) -> Any:
    """The catalog as the document's first seal covers it (the current one when unsealed or
    when the signatures cannot be read): what a later incremental update cannot swap."""
    try:
        signatures = list(reader.embedded_regular_signatures)
        if signatures:
            first = min(signatures, key=lambda s: s.signed_revision)
            return reader.get_historical_root(first.signed_revision)
    except Exception:  # noqa: BLE001, S110 - unreadable signatures: check_pdf reports them
        pass
    return reader.root


def read_licence_pdf(pdf: bytes) -> EmbeddedLicence:
    """The signed data and QR payload embedded in a licence PDF, as sealed: from the revision
    the first seal covers, so an update appended after sealing cannot substitute another
    licence (not verified here: see :func:`license.document_check.check_pdf`).
    Raises :class:`LicenceVerificationFailed` (MALFORMED) on anything else."""
    reader = open_pdf(pdf)
    try:
        return embedded_from_root(sealed_root(reader))
    except LicenceVerificationFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many types on broken files
        raise _malformed(f"the PDF cannot be read: {exc}") from None
