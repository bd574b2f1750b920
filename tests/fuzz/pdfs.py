"""Small hand-made PDFs whose catalog's embedded-file tree is broken in the ways pyHanko reports
with its own exceptions (unterminated streams, truncated objects, bad references): the seed
corpus of the PDF upload fuzzer and the regression cases of the ``embedded_from_root`` fix."""

from __future__ import annotations

CATALOG = b"<< /Type /Catalog /Pages 2 0 R /Names %s >>"
PAGES = b"<< /Type /Pages /Kids [] /Count 0 >>"


def build(objects: list[bytes]) -> bytes:
    """A one-revision PDF of ``objects`` (object 1 is the catalog) with a correct xref table."""
    out = b"%PDF-1.7\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
    return out + trailer % (len(objects) + 1, xref)


def _with_names(names: bytes, *extra: bytes) -> bytes:
    return build([CATALOG % names, PAGES, *extra])


BROKEN = {
    "names-unterminated-stream": _with_names(b"3 0 R", b"<< /Length 99 >>\nstream\nabc\nendstream"),
    "names-truncated-string": _with_names(b"<< /EmbeddedFiles 3 0 R >>", b"(x"),
    "names-truncated-dict": _with_names(b"3 0 R", b"<< /EmbeddedFiles << /Names [ (a"),
    "embedded-files-unterminated-stream": _with_names(
        b"<< /EmbeddedFiles 3 0 R >>", b"<< /Length 500 >>\nstream\nxyz"
    ),
    "names-bad-hex": _with_names(b"3 0 R", b"<a1b2zz>"),
    "names-bad-token": _with_names(b"3 0 R", b"<< /EmbeddedFiles ] >>"),
    "names-stray-endobj": _with_names(b"3 0 R", b"endobj"),
    "embedded-files-bad-number": _with_names(b"<< /EmbeddedFiles 3 0 R >>", b"1.2.3.4"),
    "names-unbalanced-array": _with_names(b"3 0 R", b"[ [ [ (a) "),
    "names-negative-length": _with_names(b"3 0 R", b"<< /Length -5 >>\nstream\nabc\nendstream"),
    "names-null-bytes": _with_names(b"3 0 R", b"\x00\x00\x00<<"),
    "embedded-files-bad-name": _with_names(b"<< /EmbeddedFiles 3 0 R >>", b"/#zz"),
}
