"""QR symbols: the module matrix of a QR code (error correction M), and pictures of one.

segno evaluates the eight data masks (ISO/IEC 18004 7.8.3) with per-module Python calls, about
25 ms for a version-12 symbol; :func:`qr_matrix` derives the candidates from one encoding
(mask 0) as row bitsets, scores them with the same four penalty rules and sets the chosen
mask's format information. The licence document draws that matrix as vector modules
(:mod:`license.pdf_writer`); :func:`render_svg` and :func:`render_png` are segno's own pictures
(the offline payload, :mod:`license.qr`).
"""

from __future__ import annotations

import functools
import io
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import segno

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


def render_svg(payload: str, *, scale: int = 4) -> str:
    """The QR code of ``payload`` as SVG text (error correction M, alphanumeric mode)."""
    return str(segno.make_qr(payload, error="m").svg_inline(scale=scale))


def render_png(payload: str, *, scale: int = 4) -> bytes:
    """The QR code of ``payload`` as PNG bytes."""
    buffer = io.BytesIO()
    segno.make_qr(payload, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
