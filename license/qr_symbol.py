"""QR symbols: the module matrix of a QR code (error correction M), and pictures of one.

:func:`qr_matrix` asks zxing-cpp (C++, libzint inside) for the symbol with data mask 0 — the
smallest version for the data at level M, segments and modes chosen by the encoder — and then
picks the data mask of lowest penalty (ISO/IEC 18004 7.8.3) itself: the eight masked candidates
are Python integers (one bit a module, light gaps between rows) and the four penalty rules are
a few dozen shifts, ANDs and popcounts each. The same rules as the encoder's own mask search
(libzint's ``qr_evaluate``: the edge counts as light in rule 3), so the symbol is the one
zxing-cpp picks by itself (tested), in ~0.2 ms for a version-12 symbol where its search takes
~0.8 ms, segno (pure Python) ~16 ms. The licence documents draw that matrix
(:mod:`license.pdf_writer` as a 1-bit image mask, :mod:`license.ofd_writer` as vector
modules); :func:`render_svg` and :func:`render_png` are segno's own pictures (the offline
payload, :mod:`license.qr`).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass

import segno
import zxingcpp

_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_MODULES = bytes(ord("1") if value < 128 else ord("0") for value in range(256))
"""Pixel value → module ("1" dark, below half intensity), for ``bytes.translate``."""
_GAP = 4
"""Light modules between rows and around the symbol in the bit field (rule 3's quiet zone)."""
_MASKS: tuple[Callable[[int, int], bool], ...] = (
    lambda y, x: (y + x) % 2 == 0,
    lambda y, x: y % 2 == 0,
    lambda y, x: x % 3 == 0,
    lambda y, x: (y + x) % 3 == 0,
    lambda y, x: (y // 2 + x // 3) % 2 == 0,
    lambda y, x: (y * x) % 2 + (y * x) % 3 == 0,
    lambda y, x: ((y * x) % 2 + (y * x) % 3) % 2 == 0,
    lambda y, x: ((y + x) % 2 + (y * x) % 3) % 2 == 0,
)
"""The eight data mask patterns (ISO/IEC 18004 table 10): where each one darkens, by row y and
column x."""
_LEVEL_M = 0b00


@dataclass(frozen=True)
class _Field:
    """The bit layout of one symbol size: module (row r, column c) is bit ``origin + r * stride
    + c``, with :data:`_GAP` light modules between rows and :data:`_GAP` light rows above and
    below; the masks of the bits each penalty rule looks at."""

    size: int
    stride: int
    origin: int
    full: int  # every bit of the field
    data: tuple[int, ...]  # per mask: the data modules it darkens
    format_modules: int  # both copies of the format information
    format_bits: tuple[int, ...]  # per mask: the dark format modules at level M
    run_across: int  # (r, c) where a run of 5 along the row fits (c ≤ size - 5)
    run_down: int  # likewise down the column (r ≤ size - 5)
    first_column: int
    first_row: int
    block: int  # (r, c) where a 2×2 block fits


def _format_information(mask: int) -> int:
    """The 15 format bits of level M and ``mask``: BCH(15, 5) then the XOR mask (ISO/IEC 18004
    7.9)."""
    data = (_LEVEL_M << 3) | mask
    remainder = data
    for _ in range(10):
        remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537)
    return ((data << 10) | remainder) ^ 0x5412


def _alignment_centres(version: int, size: int) -> list[int]:
    if version == 1:
        return []
    count = version // 7 + 2
    step = (version * 8 + count * 3 + 5) // (count * 4 - 4) * 2
    return [6] + [size - 7 - i * step for i in range(count - 2, -1, -1)]


@functools.cache
def _field(size: int) -> _Field:
    """The layout and rule masks of a symbol of ``size`` modules (built once per size)."""
    stride = size + _GAP
    origin = _GAP * stride + _GAP

    def bit(r: int, c: int) -> int:
        return 1 << (origin + r * stride + c)

    function = set()
    for r0, c0 in ((0, 0), (0, size - 8), (size - 8, 0)):  # finders, separators, format
        function |= {(r, c) for r in range(r0, r0 + 9) for c in range(c0, c0 + 9)}
    function |= {(6, i) for i in range(size)} | {(i, 6) for i in range(size)}  # timing
    version = (size - 17) // 4
    centres = _alignment_centres(version, size)
    for cy in centres:
        for cx in centres:
            if (cy, cx) not in ((6, 6), (6, size - 7), (size - 7, 6)):
                function |= {(r, c) for r in range(cy - 2, cy + 3) for c in range(cx - 2, cx + 3)}
    if version >= 7:  # version information
        function |= {(r, c) for r in range(6) for c in range(size - 11, size - 8)}
        function |= {(r, c) for r in range(size - 11, size - 8) for c in range(6)}
    cells = [(r, c) for r in range(size) for c in range(size) if (r, c) not in function]
    data = tuple(sum(bit(r, c) for r, c in cells if dark(r, c)) for dark in _MASKS)
    places: list[tuple[int, int]] = [(i, 8) for i in range(6)] + [(7, 8), (8, 8), (8, 7)]
    places += [(8, 14 - i) for i in range(9, 15)]  # bits 0-14 of the first copy
    second = [(8, size - 1 - i) for i in range(8)] + [(size - 15 + i, 8) for i in range(8, 15)]
    format_bits = []
    for mask in range(8):
        word = _format_information(mask)
        format_bits.append(
            sum(bit(*at) for i, at in enumerate(places) if word >> i & 1)
            + sum(bit(*at) for i, at in enumerate(second) if word >> i & 1)
        )
    return _Field(
        size=size,
        stride=stride,
        origin=origin,
        full=(1 << (origin + size * stride + _GAP * stride)) - 1,
        data=data,
        format_modules=sum(bit(*at) for at in places + second),
        format_bits=tuple(format_bits),
        run_across=sum(bit(r, c) for r in range(size) for c in range(size - 4)),
        run_down=sum(bit(r, c) for r in range(size - 4) for c in range(size)),
        first_column=sum(bit(r, 0) for r in range(size)),
        first_row=sum(bit(0, c) for c in range(size)),
        block=sum(bit(r, c) for r in range(size - 1) for c in range(size - 1)),
    )


def _penalty(bits: int, f: _Field) -> int:
    """The mask penalty of a symbol (ISO/IEC 18004 7.8.3, libzint's reading: a run of five or
    more of one colour scores its length - 2; each 2×2 block of one colour 3; each 1:1:3:1:1
    finder-like pattern with four light modules (or the edge) before or after it 40; 10 for
    each whole 5 % the dark share is away from 50 %)."""
    full, s = f.full, f.stride
    light = bits ^ full
    score = 0
    for step, fits, first in ((1, f.run_across, f.first_column), (s, f.run_down, f.first_row)):
        same = light ^ (bits >> step)  # bit p: module p is the colour of module p + step
        runs = same & (same >> step) & (same >> 2 * step) & (same >> 3 * step) & fits
        starts = runs & (first | bits ^ (bits << step))
        score += runs.bit_count() + 2 * starts.bit_count()
        finder = (
            bits & (light >> step) & (bits >> 2 * step) & (bits >> 3 * step)
            & (bits >> 4 * step) & (light >> 5 * step) & (bits >> 6 * step)
        )  # fmt: skip
        if finder:
            before = (light << step) & (light << 2 * step) & (light << 3 * step)
            before &= light << 4 * step
            after = (light >> 7 * step) & (light >> 8 * step) & (light >> 9 * step)
            after &= light >> 10 * step
            score += 40 * (finder & (before | after)).bit_count()
    across = light ^ (bits >> 1)
    down = light ^ (bits >> s)
    score += 3 * (across & down & (across >> s) & f.block).bit_count()
    share = 100.0 * bits.bit_count() / (f.size * f.size)
    return score + 10 * int(abs(share - 50.0) / 5.0)


def qr_matrix(data: str, *, alphanumeric: bool) -> list[str]:
    """The module rows ("1" = dark, no quiet zone) of a QR code of ``data`` at error correction
    level M, with the mask of lowest penalty. ``alphanumeric``: the caller's promise that every
    character is in the QR alphanumeric set (the encoder then picks that mode by itself);
    ValueError when one is not."""
    if alphanumeric and not set(data) <= _ALPHANUMERIC:
        raise ValueError("not a QR alphanumeric payload")
    symbol = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M", data_mask=0)
    pixels = memoryview(symbol.to_image(scale=1, add_quiet_zones=False))  # type: ignore[arg-type]
    size = (pixels.shape or (0, 0))[0]
    text = pixels.tobytes().translate(_MODULES).decode("ascii")
    f = _field(size)
    gap = "0" * _GAP
    laid = "0" * f.origin + gap.join(text[r * size : (r + 1) * size] for r in range(size))
    unmasked = int(laid[::-1], 2) ^ f.data[0]  # the data with no mask, format bits of mask 0
    unmasked &= ~f.format_modules
    best, best_score = 0, -1
    for mask in range(8):
        candidate = unmasked ^ f.data[mask] | f.format_bits[mask]
        score = _penalty(candidate, f)
        if best_score < 0 or score < best_score:
            best, best_score = candidate, score
    out = format(best, "b").zfill(f.full.bit_length())[::-1]
    return [out[f.origin + r * f.stride : f.origin + r * f.stride + size] for r in range(size)]


def render_svg(payload: str, *, scale: int = 4) -> str:
    """The QR code of ``payload`` as SVG text (error correction M, alphanumeric mode)."""
    return str(segno.make_qr(payload, error="m").svg_inline(scale=scale))


def render_png(payload: str, *, scale: int = 4) -> bytes:
    """The QR code of ``payload`` as PNG bytes."""
    buffer = io.BytesIO()
    segno.make_qr(payload, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
