# mypy: disable-error-code="no-untyped-call"
"""SealPdf: put a seal on a PDF as a PAdES signature by the seal's key (pyHanko + key store).

Placement: a position on a page (centre of the seal, millimetres from the top-left corner), an
anchor text found in the document (pdfminer.six), or a riding seal (骑缝章) cut into one slice per
page along an edge. The picture is the seal's vector drawing (:func:`seal.images.pdf_content`),
built once per seal and reused. Levels: B-B, B-T (RFC 3161 time-stamp from our TSA, in
process) and B-LT (B-T plus the seal certificate's OCSP response and the CRLs, embedded in the
DSS). Each call appends one incremental update, so several seals go on a document in turn.

Only an active seal, used by a current grant holder or the owner's representative (checked by
:meth:`seal.lifecycle.SealService.authorise_use`); the use is recorded with the document's
SHA-256 in the seal's history and the audit log.
"""

from __future__ import annotations

import functools
import hashlib
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.content import RawContent
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.stamp import StaticStampStyle
from pyhanko_certvalidator import ValidationContext

from govtrust.principal import Principal
from seal import fastpdf, images
from seal.errors import InvalidSealRequest
from seal.lifecycle import SealService, Use, UseContext
from seal.placement import (
    Anchor,
    Placement,
    Position,
    Riding,
    anchor_occurrence,
    page_index,
    riding_pages,
)
from seal.signing import CaTimeStamper, SealKey, revocation_info, signer_for
from seal.types import EventView, PadesLevel, SealView

MAX_PDF_BYTES = 50 * 1024 * 1024
PT_PER_MM = images.PT_PER_MM


@dataclass(frozen=True)
class PdfSealRequest:
    """SealPdf's input."""

    seal_id: str
    pdf: bytes
    placement: Placement = None
    level: PadesLevel = PadesLevel.B_T
    document_kind: str = ""
    reason: str = ""
    location: str = ""
    field_name: str = ""
    outline: fastpdf.Outline | None = None  # from the PDF's own writer: the seal skips parsing


@dataclass(frozen=True)
class PdfSealResult:
    """SealPdf's output."""

    sealed_pdf: bytes
    field_name: str
    document_sha256: bytes
    signing_time: datetime
    level: PadesLevel
    event: EventView


class _RecordingTimeStamper(CaTimeStamper):
    """Remembers the genTime of the token it obtained (one instance per seal)."""

    gen_time: datetime | None = None

    async def async_request_tsa_response(self, req):  # type: ignore[no-untyped-def]
        response = await super().async_request_tsa_response(req)
        token = response["time_stamp_token"]
        if token.native is not None:
            info = token["content"]["encap_content_info"]["content"].parsed
            self.gen_time = info["gen_time"].native
        return response


@functools.lru_cache(maxsize=256)
def _appearance(design: images.SealDesign) -> tuple[bytes, float, float]:
    return images.pdf_content(design)


def design_of(seal: SealView) -> images.SealDesign:
    """The picture design of a made seal."""
    return images.SealDesign(
        seal.kind,
        seal.name,
        seal.business_number,
        seal.taxpayer_number,
        code=seal.id,
        shape=seal.shape,
        width_mm=seal.width_mm,
        height_mm=seal.height_mm,
    )


def _page_count(writer: IncrementalPdfFileWriter) -> int:
    return int(writer.root["/Pages"]["/Count"])


def _media_box(writer: IncrementalPdfFileWriter, index: int) -> tuple[float, float, float, float]:
    page_ref, _ = writer.find_page_for_modification(index)
    node = page_ref.get_object()
    while node is not None:
        if "/MediaBox" in node:
            box = [float(v) for v in node["/MediaBox"]]
            return box[0], box[1], box[2], box[3]
        node = node.get("/Parent")
        node = node.get_object() if node is not None else None
    return 0.0, 0.0, 595.0, 842.0


def find_anchor(pdf: bytes, text: str, occurrence: int) -> tuple[int, float, float]:
    """(page index, x, y) in PDF user space of the centre of an occurrence of ``text``."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTChar, LTComponent, LTContainer

    needle = "".join(text.split())
    hits: list[tuple[int, float, float]] = []

    def lines(node: LTComponent) -> list[list[LTChar]]:
        found: list[list[LTChar]] = []
        if isinstance(node, LTContainer):
            chars = [c for c in node if isinstance(c, LTChar)]
            if chars:
                found.append(chars)
            for child in node:
                if not isinstance(child, LTChar):
                    found += lines(child)
        return found

    try:
        pages = list(extract_pages(io.BytesIO(pdf)))
    except Exception as exc:  # noqa: BLE001 - pdfminer raises many types on bad input
        raise InvalidSealRequest.field(
            "pdf", f"the document's text cannot be read: {exc}"
        ) from None
    for page_no, page in enumerate(pages):
        for chars in lines(page):
            kept = [c for c in chars if c.get_text().strip()]
            joined = "".join(c.get_text() for c in kept)
            start = joined.find(needle)
            while start >= 0:
                span = kept[start : start + len(needle)]
                x0, y0 = min(c.x0 for c in span), min(c.y0 for c in span)
                x1, y1 = max(c.x1 for c in span), max(c.y1 for c in span)
                hits.append((page_no, (x0 + x1) / 2, (y0 + y1) / 2))
                start = joined.find(needle, start + 1)
    return anchor_occurrence(hits, text, occurrence)


def _stamp_style(design: images.SealDesign) -> StaticStampStyle:
    stream, width, height = _appearance(design)
    return StaticStampStyle(
        border_width=0,
        background=RawContent(stream, box=layout.BoxConstraints(width, height)),
        background_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MID,
            inner_content_scaling=layout.InnerScaling.NO_SCALING,
        ),
    )


def _add_riding_slices(
    writer: IncrementalPdfFileWriter, design: images.SealDesign, riding: Riding, field: str
) -> None:
    """One /Stamp annotation per page showing its slice of the seal (same revision as the
    signature, so covered by it)."""
    spanned = riding_pages(riding, _page_count(writer))
    stream, width, height = _appearance(design)
    slice_w = width / len(spanned)
    for i, index in enumerate(spanned):
        x0, y0, x1, y1 = _media_box(writer, index)
        centre_y = y1 - riding.y_mm * PT_PER_MM if riding.y_mm else (y0 + y1) / 2
        left = x1 - slice_w if riding.edge == "right" else x0
        content = (
            b"q 0 0 %.3f %.3f re W n 1 0 0 1 %.3f 0 cm\n" % (slice_w, height, -i * slice_w)
            + stream
            + b"\nQ"
        )
        xobject = generic.StreamObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/XObject"),
                generic.NameObject("/Subtype"): generic.NameObject("/Form"),
                generic.NameObject("/BBox"): generic.ArrayObject(
                    [
                        generic.FloatObject(0),
                        generic.FloatObject(0),
                        generic.FloatObject(slice_w),
                        generic.FloatObject(height),
                    ]
                ),
            },
            stream_data=content,
        )
        page_ref, _ = writer.find_page_for_modification(index)
        rect = [left, centre_y - height / 2, left + slice_w, centre_y + height / 2]
        annot = generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Annot"),
                generic.NameObject("/Subtype"): generic.NameObject("/Stamp"),
                generic.NameObject("/Rect"): generic.ArrayObject(
                    [generic.FloatObject(v) for v in rect]
                ),
                generic.NameObject("/F"): generic.NumberObject(4),
                generic.NameObject("/P"): page_ref,
                generic.NameObject("/NM"): generic.TextStringObject(f"{field}-riding-{i + 1}"),
                generic.NameObject("/Contents"): generic.TextStringObject(
                    f"骑缝章 {i + 1}/{len(spanned)} of {field}"
                ),
                generic.NameObject("/AP"): generic.DictionaryObject(
                    {generic.NameObject("/N"): writer.add_object(xobject)}
                ),
            }
        )
        writer.register_annotation(page_ref, writer.add_object(annot))


def _check(request: PdfSealRequest) -> None:
    """SealPdf's own checks of its input (InvalidSealRequest naming the field)."""
    if not request.pdf:
        raise InvalidSealRequest.field("pdf", "required")
    if len(request.pdf) > MAX_PDF_BYTES:
        raise InvalidSealRequest.field("pdf", f"at most {MAX_PDF_BYTES} bytes")
    if not request.pdf.lstrip()[:5] == b"%PDF-":
        raise InvalidSealRequest.field("pdf", "not a PDF document")
    if len(request.reason) > 500 or len(request.location) > 200:
        raise InvalidSealRequest.field("reason", "reason ≤ 500 and location ≤ 200 characters")


def _hierarchy(service: SealService, key: SealKey) -> list[bytes]:
    extra = getattr(service.authority, "hierarchy_certificates", None)
    return list(extra()) if callable(extra) else list(key.chain[:-1])


class SealPdf:
    """Seals PDFs with seals of a :class:`SealService`."""

    def __init__(self, service: SealService) -> None:
        self.service = service

    def key_of(self, context: UseContext) -> SealKey:
        """The seal's key, certificate and chain."""
        return SealKey(
            context.key_id, context.certificate_der, tuple(self.service.authority.chain())
        )

    def seal(self, principal: Principal, request: PdfSealRequest) -> PdfSealResult:
        """Seal ``request.pdf``; raises PermissionDenied / FailedPrecondition with the reason
        when the caller may not use the seal or the seal is not active."""
        _check(request)
        context = self.service.authorise_use(principal, request.seal_id, request.document_kind)
        sealed, field, signing_time = self.sign(context, request)
        digest = hashlib.sha256(request.pdf).digest()
        event = self.service.record_use(
            principal,
            context,
            Use("seal_pdf", request.document_kind, "sha256", digest, request.reason),
        )
        return PdfSealResult(sealed, field, digest, signing_time, request.level, event)

    def reproduce(
        self, principal: Principal, request: PdfSealRequest, audit_seq: int
    ) -> PdfSealResult:
        """Seal ``request.pdf`` again for the use recorded with audit record ``audit_seq`` (a
        call whose answer was lost): the same use (its event; no second one is recorded), a
        new signature and time-stamp (the lost document was never delivered); the remaking
        audited (:meth:`SealService.record_reproduction`). Refused like :meth:`seal` when the
        caller may no longer use the seal, and with SealRuleViolation when ``request.pdf`` is
        not the document that use recorded."""
        _check(request)
        recorded = self.service.recorded_use(principal, request.seal_id, audit_seq, "seal_pdf")
        digest = hashlib.sha256(request.pdf).digest()
        recorded.require_digest("sha256", digest)
        sealed, field, signing_time = self.sign(recorded.context, request)
        self.service.record_reproduction(principal, recorded)
        return PdfSealResult(sealed, field, digest, signing_time, request.level, recorded.event)

    def sign(self, context: UseContext, request: PdfSealRequest) -> tuple[bytes, str, datetime]:
        """The signing step alone (no authorisation, no record): returns (pdf, field, time)."""
        field = request.field_name or f"Seal-{context.seal.id}-{uuid.uuid4().hex[:8]}"
        if len(field) > 100 or "." in field:
            raise InvalidSealRequest.field("field_name", "at most 100 characters, no dots")
        if isinstance(request.placement, Position | Anchor) and request.level in (
            PadesLevel.B_B,
            PadesLevel.B_T,
        ):
            try:
                return self._fast(context, request, field)
            except fastpdf.Unsupported:
                pass  # the general path below handles (and reports) everything else
        try:
            writer = IncrementalPdfFileWriter(io.BytesIO(request.pdf), strict=False)
        except (PdfError, ValueError, KeyError, TypeError) as exc:
            raise InvalidSealRequest.field("pdf", f"the PDF cannot be parsed: {exc}") from None
        if writer.prev.encrypted:
            raise InvalidSealRequest.field("pdf", "encrypted PDFs cannot be sealed")
        design = design_of(context.seal)
        _, width, height = _appearance(design)
        placement = request.placement
        field_spec: fields.SigFieldSpec
        try:
            count = _page_count(writer)
            if isinstance(placement, Position):
                index = page_index(placement.page or 1, count, "placement.position.page")
                x0, _, _, y1 = _media_box(writer, index)
                cx, cy = x0 + placement.x_mm * PT_PER_MM, y1 - placement.y_mm * PT_PER_MM
                field_spec = self._visible(field, index, cx, cy, width, height)
            elif isinstance(placement, Anchor):
                if not placement.text.strip():
                    raise InvalidSealRequest.field("placement.anchor.text", "required")
                index, ax, ay = find_anchor(request.pdf, placement.text, placement.occurrence)
                cx = ax + placement.offset_x_mm * PT_PER_MM
                cy = ay - placement.offset_y_mm * PT_PER_MM
                field_spec = self._visible(field, index, cx, cy, width, height)
            else:
                field_spec = fields.SigFieldSpec(sig_field_name=field, on_page=0)
                if isinstance(placement, Riding):
                    _add_riding_slices(writer, design, placement, field)
            fields.append_signature_field(writer, field_spec)
        except (PdfError, KeyError, TypeError) as exc:
            raise InvalidSealRequest.field(
                "pdf", f"the PDF's page tree is unusable: {exc}"
            ) from None
        except SigningError as exc:
            raise InvalidSealRequest.field("field_name", str(exc)) from None
        key = self.key_of(context)
        signer = signer_for(self.service.keystore, key)
        timestamper = (
            _RecordingTimeStamper(self.service.authority)
            if request.level is not PadesLevel.B_B
            else None
        )
        validation_context = None
        if request.level is PadesLevel.B_LT:
            from asn1crypto import x509

            info = revocation_info(self.service.authority, context.certificate_der)
            validation_context = ValidationContext(
                trust_roots=[x509.Certificate.load(key.chain[-1])],
                other_certs=[x509.Certificate.load(c) for c in _hierarchy(self.service, key)],
                ocsps=list(info.ocsps),
                crls=list(info.crls),
                allow_fetching=False,
                revocation_mode="soft-fail",
            )
        metadata = signers.PdfSignatureMetadata(
            field_name=field,
            reason=request.reason or None,
            location=request.location or None,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=request.level is PadesLevel.B_LT,
            validation_context=validation_context,
        )
        pdf_signer = signers.PdfSigner(
            metadata,
            signer=signer,
            timestamper=timestamper,
            stamp_style=_stamp_style(design),
        )
        claimed = datetime.now(UTC)
        try:
            output = pdf_signer.sign_pdf(writer)
        except (PdfError, SigningError) as exc:
            raise InvalidSealRequest.field("pdf", f"the PDF cannot be sealed: {exc}") from None
        assert isinstance(output, io.BytesIO)
        moment = timestamper.gen_time if timestamper and timestamper.gen_time else claimed
        return output.getvalue(), field, moment

    def _fast(
        self, context: UseContext, request: PdfSealRequest, field: str
    ) -> tuple[bytes, str, datetime]:
        """The direct writer (:mod:`seal.fastpdf`) for a visible B-B / B-T seal."""
        stream, width, height = _appearance(design_of(context.seal))
        placement = request.placement

        def place(
            count: int, box_of: Callable[[int], tuple[float, float, float, float]]
        ) -> fastpdf.Visible:
            if isinstance(placement, Position):
                index = page_index(placement.page or 1, count, "placement.position.page")
                x0, _, _, y1 = box_of(index)
                cx, cy = x0 + placement.x_mm * PT_PER_MM, y1 - placement.y_mm * PT_PER_MM
            else:
                assert isinstance(placement, Anchor)
                if not placement.text.strip():
                    raise InvalidSealRequest.field("placement.anchor.text", "required")
                index, ax, ay = find_anchor(request.pdf, placement.text, placement.occurrence)
                cx = ax + placement.offset_x_mm * PT_PER_MM
                cy = ay - placement.offset_y_mm * PT_PER_MM
            rect = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
            return fastpdf.Visible(index, rect, stream, width, height)

        template = fastpdf.cms_template(
            context.certificate_der, tuple(self.service.authority.chain()), context.scheme
        )
        sealed, moment = fastpdf.seal(
            fastpdf.FastRequest(
                pdf=request.pdf,
                field_name=field,
                place=place,
                reason=request.reason,
                location=request.location,
                keystore=self.service.keystore,
                key_id=context.key_id,
                template=template,
                timestamp=self.service.authority.timestamp
                if request.level is PadesLevel.B_T
                else None,
                outline=request.outline,
            )
        )
        return sealed, field, moment

    @staticmethod
    def _visible(
        field: str, index: int, cx: float, cy: float, width: float, height: float
    ) -> fields.SigFieldSpec:
        box = (
            round(cx - width / 2, 2),
            round(cy - height / 2, 2),
            round(cx + width / 2, 2),
            round(cy + height / 2, 2),
        )
        # pyHanko types the box as ints but writes any number (sub-point placement matters)
        return fields.SigFieldSpec(sig_field_name=field, on_page=index, box=box)  # type: ignore[arg-type]
