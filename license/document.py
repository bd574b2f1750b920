"""The licence document: a one-page PDF rendered from the licence type's layout, sealed (PAdES B-T).

:meth:`LicenceDocuments.render` lays the page out (:mod:`license.layout`: title, the holder's
``KZ_*`` fields with the labels of the type's field schema, the issuing department and date, a
QR code of the public verification URL and one of the offline payload, ``GT1:…`` labelled
离线核验码) and writes it as PDF (:mod:`license.pdf_writer`: real CJK text in an embedded font
subset, the signed data and QR payload as embedded files, the CA hierarchy in ``/DSS``).

:meth:`LicenceDocuments.make` then seals it with the department's official seal through
:meth:`seal.pdf.SealPdf.sign` at B-T: the seal picture is the visible signature's appearance at
the layout's seal area (the unsealed rendering leaves that area blank on purpose, so a copy
that was never sealed never shows a seal). Reading it back is :mod:`license.pdf_reader`,
checking it :mod:`license.document_check`.

:meth:`LicenceDocuments.make_ofd` writes the same page as OFD (:mod:`license.ofd_writer`) and
seals it with the same seal through :meth:`seal.ofd_seal.SealOfd.sign`: a GB/T 38540 signature
(SM2 for an SM2 seal) time-stamped by our TSA, its ``StampAnnot`` at the layout's seal area;
it carries the CA hierarchy's certificates as the PDF does (an attachment), and is checked by
:mod:`license.ofd_check`.
:meth:`LicenceDocuments.make` makes the formats the licence type names (:class:`LicenceFiles`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date

from license.days import licence_day
from license.departments import DOCUMENT_KIND
from license.layout import DocumentInput, Page, lay_out
from license.ofd_writer import ofd_contents, write_ofd
from license.pdf_writer import write_outlined_pdf, write_pdf
from seal.lifecycle import UseContext
from seal.ofd_seal import SealedOfd, SealOfd
from seal.pdf import PdfSealRequest, SealPdf, design_of
from seal.placement import Position
from seal.types import PadesLevel, SealView

SEAL_FIELD = "LicenceSeal"


def _page(doc: DocumentInput, seal: SealView) -> Page:
    """``doc`` laid out around ``seal``'s picture."""
    seal_w, seal_h = design_of(seal).size_mm()
    return lay_out(doc, max(seal_w, seal_h))


@dataclass(frozen=True)
class LicenceFiles:
    """A licence's sealed documents: the PDF and/or the OFD (with what its seal use records)."""

    pdf: bytes | None = None
    ofd: SealedOfd | None = None


@functools.lru_cache(maxsize=64)
def _self_signed(der: bytes) -> bool:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.issuer == cert.subject


class LicenceDocuments:
    """Renders licence documents and seals them with the issuing department's official seal."""

    def __init__(self, seal_pdf: SealPdf) -> None:
        self.seal_pdf = seal_pdf
        self.seal_ofd = SealOfd(seal_pdf.service)

    def _certificates(self) -> list[bytes]:
        """The CA hierarchy's certificates but the roots (the TSA's chain is not in its token;
        with these in the document a time-stamp checks offline with only the root)."""
        authority = self.seal_pdf.service.authority
        extra = getattr(authority, "hierarchy_certificates", None)
        ders = list(extra()) if callable(extra) else list(authority.chain())
        return sorted(d for d in set(ders) if not _self_signed(d))

    def render(self, doc: DocumentInput, seal: SealView) -> bytes:
        """The unsealed one-page PDF (the seal area is left for :meth:`make`)."""
        return write_pdf(_page(doc, seal), doc, self._certificates())

    def render_ofd(self, doc: DocumentInput, seal: SealView, created: date | None = None) -> bytes:
        """The unsealed one-page OFD laid out around ``seal``, created on ``created`` (default:
        today, Beijing time); its seal area is blank until :meth:`make_ofd` seals it."""
        return write_ofd(_page(doc, seal), doc, created or licence_day(), self._certificates())

    def make_ofd(
        self, doc: DocumentInput, context: UseContext, created: date | None = None
    ) -> SealedOfd:
        """Render the OFD and seal it (GB/T 38540, time-stamped) with ``context``'s seal at the
        layout's seal area. Does not record the use: the caller records it."""
        page = _page(doc, context.seal)
        contents = ofd_contents(page, doc, created or licence_day(), self._certificates())
        x, y = page.layout.seal_centre
        return self.seal_ofd.sign(context, contents, Position(1, x, y))

    def make(
        self, doc: DocumentInput, context: UseContext, formats: tuple[str, ...] = ("pdf",)
    ) -> LicenceFiles:
        """The sealed documents ``formats`` names (``pdf``, ``ofd``) with ``context``'s seal.
        Does not record the uses: the caller records them in its own transaction."""
        return LicenceFiles(
            pdf=self.make_pdf(doc, context) if "pdf" in formats else None,
            ofd=self.make_ofd(doc, context) if "ofd" in formats else None,
        )

    def make_pdf(self, doc: DocumentInput, context: UseContext) -> bytes:
        """Render and seal (PAdES B-T) with ``context``'s seal; records nothing."""
        page = _page(doc, context.seal)
        pdf, outline = write_outlined_pdf(page, doc, self._certificates())
        x, y = page.layout.seal_centre
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
                outline=outline,  # the seal appends without parsing the file just written
            ),
        )
        return sealed
