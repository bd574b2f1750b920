"""QR symbols: the module matrix of a QR code (error correction M), and pictures of one.

:func:`qr_matrix` asks zxing-cpp (C++) for the symbol: the smallest version for the data at
level M (segments and modes chosen by the encoder) and the data mask of lowest penalty
(ISO/IEC 18004 7.8.3), in ~1 ms for a version-12 symbol, where segno (pure Python) takes
~16 ms and the earlier hand-written mask search ~9 ms (tested: segno's version, read back at
level M). The licence documents draw that matrix as vector modules (:mod:`license.pdf_writer`,
:mod:`license.ofd_writer`); :func:`render_svg` and :func:`render_png` are segno's own pictures
(the offline payload, :mod:`license.qr`).
"""

from __future__ import annotations

import io

import segno
import zxingcpp

_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
_MODULES = bytes(ord("1") if value < 128 else ord("0") for value in range(256))
"""Pixel value → module ("1" dark, below half intensity), for ``bytes.translate``."""


def qr_matrix(data: str, *, alphanumeric: bool) -> list[str]:
    """The module rows ("1" = dark, no quiet zone) of a QR code of ``data`` at error correction
    level M, with the mask of lowest penalty. ``alphanumeric``: the caller's promise that every
    character is in the QR alphanumeric set (the encoder then picks that mode by itself);
    ValueError when one is not."""
    if alphanumeric and not set(data) <= _ALPHANUMERIC:
        raise ValueError("not a QR alphanumeric payload")
    symbol = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    pixels = memoryview(symbol.to_image(scale=1, add_quiet_zones=False))  # type: ignore[arg-type]
    rows, columns = pixels.shape or (0, 0)
    text = pixels.tobytes().translate(_MODULES).decode("ascii")
    return [text[row * columns : (row + 1) * columns] for row in range(rows)]


def render_svg(payload: str, *, scale: int = 4) -> str:
    """The QR code of ``payload`` as SVG text (error correction M, alphanumeric mode)."""
    return str(segno.make_qr(payload, error="m").svg_inline(scale=scale))


def render_png(payload: str, *, scale: int = 4) -> bytes:
    """The QR code of ``payload`` as PNG bytes."""
    buffer = io.BytesIO()
    segno.make_qr(payload, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
