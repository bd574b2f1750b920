"""The licence OFD: a laid-out page (:mod:`license.layout`) written through :mod:`seal.ofd`.

The same page as :mod:`license.pdf_writer` draws, in OFD (GB/T 33190): every text a
``TextObject`` in an embedded subset of the licence font that carries a cmap
(:func:`license.fonts.cmap_subset`; OFD text is Unicode), every frame a stroked ``PathObject``,
both QR codes vector modules (:func:`license.qr_symbol.qr_matrix`, one closed rectangle per run
of dark modules, on a white square), and the GB/T 36903 licence metadata (ZZMC, ZZBS, ZZBFJG,
CZZT, …) as ``CustomData`` in ``OFD.xml``'s ``DocInfo``; the signed data (compact JWS) and the
offline QR payload are attachments named as the PDF's embedded files (:data:`JWS_FILE`,
:data:`QR_FILE`), and the CA hierarchy's certificates but the roots (:data:`CA_FILE`, PEM: what
the PDF carries in ``/DSS``; the SES_Signature names only its signer's certificate), so the OFD
alone and a root are enough to check the licence, as the PDF is. The seal
area is left blank: the seal's picture shows only through the ``StampAnnot`` of its signature
(:meth:`license.document.LicenceDocuments.make_ofd`), so a copy never sealed never shows one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import date

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from license.fonts import Font, cmap_subset, licence_font
from license.layout import (
    PT_PER_MM,
    Colour,
    DocumentInput,
    Page,
    QrCode,
    Rect,
    Text,
    text_width,
)
from license.pdf_writer import JWS_FILE, QR_FILE
from license.qr_symbol import qr_matrix
from license.signed_data import LicenceMetadata
from seal.ofd import model
from seal.ofd.package import OfdPackage, write_package
from seal.ofd.reader import OfdContents
from seal.ofd.writer import document_contents

FONT_NAME = "WenQuanYi Micro Hei"
CREATOR = "govtrust licence documents"
METADATA_NAMES = (
    "ZZMC",
    "ZZLXDM",
    "ZZBH",
    "ZZBS",
    "ZZBFJG",
    "ZZBFJGDM",
    "ZZBFRQ",
    "CZZT",
    "CZZTDM",
    "CZZTDMLX",
    "ZZYXQQSRQ",
    "ZZYXQJZRQ",
)
"""The GB/T 36903 names written as ``CustomData``, in this order (as :meth:`LicenceMetadata.to_json`
names them)."""
CA_FILE = "licence-ca.pem"
"""The attachment of the CA certificates that link the seal's and the TSA's certificates to a
root (PEM, sorted; they need no trust of their own: each is checked up to a root)."""
_WHITE: model.Colour = (255, 255, 255)


def _rgb(colour: Colour) -> model.Colour:
    r, g, b = (round(c * 255) for c in colour)
    return (r, g, b)


@functools.lru_cache(maxsize=8192)
def _advance(metrics: Font, char: str) -> float:
    """The advance of ``char`` in ``metrics`` (a fraction of the em), remembered per font."""
    return metrics.advance(metrics.gid(char))


def _text(item: Text, font: model.Font) -> model.Text:
    """One line: the first glyph's origin placed as the PDF places it, one advance per glyph."""
    metrics = licence_font()
    width_pt = text_width(item.text, item.size) + item.spacing * (len(item.text) - 1)
    x_pt = item.x_mm * PT_PER_MM
    if item.align == "centre":
        x_pt -= width_pt / 2
    elif item.align == "right":
        x_pt -= width_pt
    size_mm = item.size / PT_PER_MM
    deltas = tuple(
        (_advance(metrics, char) * item.size + item.spacing) / PT_PER_MM for char in item.text[:-1]
    )
    box = model.Box(
        x_pt / PT_PER_MM, item.baseline_mm - size_mm, width_pt / PT_PER_MM, size_mm * 1.3
    )
    return model.Text(box, font, size_mm, item.text, 0, size_mm, deltas, _rgb(item.colour))


def _rect(item: Rect) -> model.Path:
    box = model.Box(item.x_mm, item.y_mm, item.w_mm, item.h_mm)
    data = model.rectangles([(0, 0, item.w_mm, item.h_mm)])
    return model.Path(
        box, data, fill=None, stroke=_rgb(item.colour), line_width=item.line / PT_PER_MM
    )


def _dark_runs(row: int, line: str) -> list[tuple[int, int, int]]:
    """(row, first column, column after the last) of each run of ``1`` in ``line``, the
    columns shifted past the four-module quiet zone."""
    runs = []
    at = 4
    for piece in line.split("0"):
        if piece:
            runs.append((row, at, at + len(piece)))
        at += len(piece) + 1
    return runs


def qr_paths(item: QrCode) -> tuple[model.Path, model.Path]:
    """The white square (quiet zone included) and the dark modules of ``item``, as paths."""
    matrix = qr_matrix(item.data, alphanumeric=item.alphanumeric)
    box = model.Box(item.x_mm, item.y_mm, item.size_mm, item.size_mm)
    cells = len(matrix) + 8  # the quiet zone, four modules on each side
    runs = [run for row, line in enumerate(matrix) for run in _dark_runs(4 + row, line)]
    square = model.rectangles([(0, 0, item.size_mm, item.size_mm)])
    modules = model.grid_rectangles(runs, item.size_mm / cells, cells)
    return (
        model.Path(box, square, fill=_WHITE, stroke=None),
        model.Path(box, modules, fill=model.BLACK, stroke=None),
    )


def custom_data(metadata: LicenceMetadata) -> tuple[tuple[str, str], ...]:
    """The licence metadata as ``CustomData`` (name, value) pairs, :data:`METADATA_NAMES`."""
    values = metadata.to_json()
    return tuple((name, str(values[name])) for name in METADATA_NAMES)


def write_ofd(
    page: Page, doc: DocumentInput, created: date, certificates: Sequence[bytes] = ()
) -> bytes:
    """The OFD file of ``page`` with ``doc``'s metadata in ``DocInfo`` and its signed data, QR
    payload and the CA ``certificates`` (DER; none: no :data:`CA_FILE`) attached (created on
    ``created``); the same arguments give the same bytes."""
    return write_package(ofd_package(page, doc, created, certificates))


def _pem(certificates: Sequence[bytes]) -> bytes:
    """The certificates as concatenated PEM, in a stable order."""
    return _pem_of(tuple(sorted(set(certificates))))


@functools.lru_cache(maxsize=16)
def _pem_of(certificates: tuple[bytes, ...]) -> bytes:
    """:func:`_pem` of sorted, distinct certificates (the same for every licence of a CA
    hierarchy: made once, and the same bytes object, whose digest and deflate
    :mod:`seal.ofd` then remember)."""
    return b"".join(
        x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM) for der in certificates
    )


def ofd_package(
    page: Page, doc: DocumentInput, created: date, certificates: Sequence[bytes] = ()
) -> OfdPackage:
    """The files of :func:`write_ofd`'s OFD, before they are zipped."""
    return ofd_contents(page, doc, created, certificates).package


def ofd_contents(
    page: Page, doc: DocumentInput, created: date, certificates: Sequence[bytes] = ()
) -> OfdContents:
    """:func:`ofd_package` with its document as read back (what sealing adds to)."""
    metadata = doc.metadata
    texts = [item for item in page.items if isinstance(item, Text) and item.text]
    font = model.Font(FONT_NAME, FONT_NAME, cmap_subset("".join(t.text for t in texts)))
    objects: list[model.GraphicObject] = []
    for item in page.items:
        if isinstance(item, Text):
            if item.text:
                objects.append(_text(item, font))
        elif isinstance(item, Rect):
            objects.append(_rect(item))
        elif item.data:
            objects += qr_paths(item)
    info = model.DocumentInfo(
        doc_id=hashlib.sha256(metadata.canonical()).hexdigest()[:32],
        creation_date=created.isoformat(),
        creator=CREATOR,
        custom_data=custom_data(metadata),
    )
    document = model.Document(
        info,
        page.layout.width_mm,
        page.layout.height_mm,
        (model.Page(tuple(objects)),),
        (font,),
        attachments=(
            model.Attachment(JWS_FILE, "jws", doc.signed_data.encode("ascii")),
            model.Attachment(QR_FILE, "txt", doc.qr_payload.encode("ascii")),
            *([model.Attachment(CA_FILE, "pem", _pem(certificates))] if certificates else []),
        ),
    )
    return document_contents(document)
