"""The licence PDF: a laid-out page (:mod:`license.layout`) written directly, no PDF library.

All text is real text in an embedded subset of the licence font (:mod:`license.fonts`;
``Type0``/``CIDFontType2`` with a ``ToUnicode`` map, so it can be searched and extracted) and
each QR code is a 1-bit image mask, one sample a module (:func:`license.qr_symbol.qr_matrix`;
drawing ~1,000 rectangles a symbol cost 0.3 ms). The signed licence data
(compact JWS) and the QR payload are embedded files (:data:`JWS_FILE`, :data:`QR_FILE`;
EmbeddedFiles name tree and ``/AF``), and the CA hierarchy's certificates but the root go in
``/DSS /Certs`` (the time-stamp token carries only the TSA's certificate), so the PDF alone can
be checked offline with only the root (:mod:`license.document_check`). A classic
cross-reference table keeps the seal on the seal service's fast path (:mod:`seal.fastpdf`).
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from license.fonts import licence_font
from license.layout import PT_PER_MM, DocumentInput, Page, QrCode, Rect, Text, text_width
from license.qr_symbol import qr_matrix
from seal.fastpdf import Outline

JWS_FILE = "licence.jws"
QR_FILE = "licence-qr.txt"  # sorts before JWS_FILE in the name tree


# --- content stream -----------------------------------------------------------------------------


class _Canvas:
    """A page content stream in millimetres from the top-left corner, its text drawn in the
    glyph ids of a compact subset (``new_id``: font glyph id → subset id, which is the CID);
    records the CIDs used and their characters."""

    def __init__(
        self, width_mm: float, height_mm: float, new_id: Mapping[int, int], chars: Iterable[str]
    ) -> None:
        self.width_mm, self.height_mm = width_mm, height_mm
        self.ops: list[str] = []
        self.cids: dict[int, str] = {}
        self.font = licence_font()
        self.new_id = new_id
        self._cid = {char: new_id[self.font.gid(char)] for char in chars}  # of ``chars``
        self._code = {char: f"{cid:04x}" for char, cid in self._cid.items()}
        self._seen: set[str] = set()

    def _y(self, y_mm: float) -> float:
        return (self.height_mm - y_mm) * PT_PER_MM

    def text(self, item: Text) -> None:
        """One line of text, placed by its alignment."""
        if not item.text:
            return
        text, size, spacing = item.text, item.size, item.spacing
        width = text_width(text, size) + spacing * (len(text) - 1)
        x = item.x_mm * PT_PER_MM
        if item.align == "centre":
            x -= width / 2
        elif item.align == "right":
            x -= width
        for char in dict.fromkeys(text):  # each CID's first character, in drawing order
            if char not in self._seen:
                self._seen.add(char)
                cid = self._cid[char]
                if cid:
                    self.cids.setdefault(cid, char)
        codes = "".join(map(self._code.__getitem__, text))
        r, g, b = item.colour
        self.ops.append(
            f"BT {r:.3f} {g:.3f} {b:.3f} rg /F1 {size:.2f} Tf {spacing:.3f} Tc "
            f"1 0 0 1 {x:.2f} {self._y(item.baseline_mm):.2f} Tm <{codes}> Tj ET"
        )

    def rect(self, item: Rect) -> None:
        """A stroked rectangle."""
        r, g, b = item.colour
        self.ops.append(
            f"q {r:.3f} {g:.3f} {b:.3f} RG {item.line:.2f} w {item.x_mm * PT_PER_MM:.2f} "
            f"{self._y(item.y_mm + item.h_mm):.2f} {item.w_mm * PT_PER_MM:.2f} "
            f"{item.h_mm * PT_PER_MM:.2f} re S Q"
        )

    def qr(self, item: QrCode) -> None:
        """A QR code on a white square (the quiet zone included): its modules one 1-bit image
        mask, one sample a module (an inline image, hex-encoded so the stream stays text), in
        the current colour (black)."""
        if not item.data:
            return
        matrix = qr_matrix(item.data, alphanumeric=item.alphanumeric)
        n = len(matrix)
        x_pt, size_pt = item.x_mm * PT_PER_MM, item.size_mm * PT_PER_MM
        bottom = self._y(item.y_mm + item.size_mm)
        module = size_pt / (n + 8)
        pad = "0" * (-n % 8)  # each row of samples starts on a byte
        rows = pad.join(matrix) + pad
        samples = int(rows, 2).to_bytes(len(rows) // 8, "big").hex()
        self.ops.append(
            f"q 1 g {x_pt:.2f} {bottom:.2f} {size_pt:.2f} {size_pt:.2f} re f 0 g "
            f"{n * module:.4f} 0 0 {n * module:.4f} {x_pt + 4 * module:.3f} "
            f"{bottom + 4 * module:.3f} cm\nBI /IM true /W {n} /H {n} /BPC 1 /D [1 0] /F /AHx "
            f"ID\n{samples}>\nEI Q"
        )

    def content(self) -> bytes:
        return "\n".join(self.ops).encode("ascii")


def _draw(page: Page) -> _Canvas:
    """The content stream of ``page``'s items, in order, its text in the glyph ids of the
    compact subset of the page's characters."""
    font = licence_font()
    chars = {char for item in page.items if isinstance(item, Text) for char in item.text}
    new_id = font.renumbering(font.gid(char) for char in chars)
    canvas = _Canvas(page.layout.width_mm, page.layout.height_mm, new_id, chars)
    for item in page.items:
        if isinstance(item, Text):
            canvas.text(item)
        elif isinstance(item, Rect):
            canvas.rect(item)
        else:
            canvas.qr(item)
    return canvas


# --- PDF file -----------------------------------------------------------------------------------


def _pdf_text(text: str) -> bytes:
    if text.isascii():
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return f"({escaped})".encode("latin-1")
    return b"<feff" + text.encode("utf-16-be").hex().encode() + b">"


def _stream(
    dictionary: bytes,
    data: bytes,
    *,
    compress: bool = True,
    level: int = 6,
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
) -> bytes:
    if compress:
        compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
        data = compressor.compress(data) + compressor.flush()
        dictionary += b"/Filter/FlateDecode"
    return b"<<" + dictionary + b"/Length %d>>\nstream\n" % len(data) + data + b"\nendstream"


@functools.lru_cache(maxsize=256)
def _certificate_stream(der: bytes) -> bytes:
    """A /DSS certificate's stream, compressed once per certificate (the CA hierarchy is the
    same in every licence: compressing it anew for each cost about a third of the writing)."""
    return _stream(b"", der)


@functools.lru_cache(maxsize=8192)
def _utf16(char: str) -> str:
    """``char`` in UTF-16BE as hex (remembered: each licence maps the same characters)."""
    return char.encode("utf-16-be").hex()


def _to_unicode(cids: Mapping[int, str]) -> bytes:
    entries = sorted(cids.items())
    lines = [
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
        "1 begincodespacerange <0000> <FFFF> endcodespacerange",
    ]
    for start in range(0, len(entries), 100):
        chunk = entries[start : start + 100]
        lines.append(f"{len(chunk)} beginbfchar")
        lines += [f"<{gid:04x}> <{_utf16(char)}>" for gid, char in chunk]
        lines.append("endbfchar")
    lines.append("endcmap CMapName currentdict /CMap defineresource pop end end")
    return "\n".join(lines).encode("ascii")


def _pdf_date(moment: datetime) -> bytes:
    return moment.astimezone(UTC).strftime("(D:%Y%m%d%H%M%S+00'00')").encode()


def write_pdf(page: Page, doc: DocumentInput, certificates: Sequence[bytes] = ()) -> bytes:
    """The PDF file of ``page``: catalog, page, font, embedded files (``doc``'s signed data and
    QR payload), info, and ``certificates`` (the CA hierarchy: the time-stamp's chain for
    offline checking) in the /DSS; classic xref table."""
    return write_outlined_pdf(page, doc, certificates)[0]


def write_outlined_pdf(
    page: Page, doc: DocumentInput, certificates: Sequence[bytes] = ()
) -> tuple[bytes, Outline]:
    """:func:`write_pdf` and what the seal needs to know of the file to append its signature
    without parsing it (:class:`seal.fastpdf.Outline`)."""
    canvas = _draw(page)
    font = canvas.font
    cids = canvas.cids
    gid_of = {cid: gid for gid, cid in canvas.new_id.items()}
    tag = "".join(  # of the font's glyph ids: the subset's own are the same for any N glyphs
        chr(65 + b % 26)
        for b in hashlib.sha256(repr(sorted(gid_of[cid] for cid in cids)).encode()).digest()[:6]
    )
    widths = " ".join(f"{cid} [{round(font.advance(gid_of[cid]) * 1000)}]" for cid in sorted(cids))
    scale = 1000 / font.upm
    bbox = " ".join(str(round(v * scale)) for v in font.bbox)
    ascent = font.ascent * scale
    meta = doc.metadata
    now = datetime.now(UTC)
    w_pt, h_pt = canvas.width_mm * PT_PER_MM, canvas.height_mm * PT_PER_MM
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
        _stream(b"", canvas.content(), level=1),  # level 6: 4× the time for 20% fewer bytes
        b"<</Type/Font/Subtype/Type0/BaseFont" + name
        + b"/Encoding/Identity-H/DescendantFonts[6 0 R]/ToUnicode 9 0 R>>",
        b"<</Type/Font/Subtype/CIDFontType2/BaseFont" + name
        + b"/CIDSystemInfo<</Registry(Adobe)/Ordering(Identity)/Supplement 0>>"
        + b"/FontDescriptor 7 0 R/CIDToGIDMap/Identity/DW 1000/W[" + widths.encode() + b"]>>",
        b"<</Type/FontDescriptor/FontName" + name + b"/Flags 4/FontBBox[" + bbox.encode()
        + b"]/ItalicAngle 0/Ascent %d/Descent %d/CapHeight %d/StemV 80/FontFile2 8 0 R>>"
        % (round(font.ascent * scale), round(font.descent * scale), round(ascent * 0.8)),
        # Huffman coding only (no LZ77 matching): 0.15 ms and 22 kB for the ~28 kB subset, where
        # level 1 took 0.45 ms for 19 kB (glyph outlines repeat little; level 6: 1 ms, 18 kB)
        _stream(b"", font.compact_subset(canvas.new_id), strategy=zlib.Z_HUFFMAN_ONLY),
        _stream(b"", _to_unicode(cids)),
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
        objects += [_certificate_stream(der) for der in certificates]
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
    outline = Outline(
        size=len(objects) + 1,
        startxref=xref,
        catalog=(1, objects[0]),
        page=(3, objects[2]),
        media_box=(0.0, 0.0, float(b"%.2f" % w_pt), float(b"%.2f" % h_pt)),
        info=b"10 0 R",
        file_id=b"<%s>" % file_id,
    )
    return bytes(out), outline
