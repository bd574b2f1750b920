"""Hostile PDFs for the limits on untrusted documents (issue #13): a file with many empty
incremental updates, each a cross-reference section with no entries and a trailer."""

from __future__ import annotations

import io
import re


def append_empty_updates(pdf: bytes, count: int) -> bytes:
    """``pdf`` with ``count`` empty incremental updates appended (raw xref/trailer sections
    chained by /Prev, as a hostile client would write them: 8 bytes of content each)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    trailer = PdfFileReader(io.BytesIO(pdf), strict=False).trailer_view
    size = int(trailer["/Size"])
    root = trailer.raw_get("/Root").idnum
    previous = int(re.findall(rb"startxref\s+(\d+)", pdf)[-1])
    out = bytearray(pdf if pdf.endswith(b"\n") else pdf + b"\n")
    for _ in range(count):
        at = len(out)
        out += (
            b"xref\n0 0\ntrailer\n<< /Size %d /Root %d 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n"
            % (
                size,
                root,
                previous,
                at,
            )
        )
        previous = at
    return bytes(out)
