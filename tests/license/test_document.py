"""The licence document: rendered from the type's layout, sealed (PAdES B-T) by the department's
official seal through the real seal service, and checked from the PDF alone.

Checked by independent tools: poppler's pdfsig (NSS, with the CA root in a fresh database),
pyHanko, pdftotext (real CJK text) and zxing-cpp decoding both QR codes from a 200 dpi rendering.
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from license.catalogue import BUSINESS_LICENCE_CODE, business_licence, uscc_certificate
from license.checking import State, Verdict
from license.days import licence_day
from license.departments import DepartmentSealSigners
from license.document import LicenceDocuments
from license.document_check import check_pdf
from license.errors import LicenceVerificationFailed, Reason
from license.identifiers import build_identifier
from license.layout import DocumentInput, resolve_layout
from license.pdf_reader import EmbeddedLicence, read_licence_pdf
from license.qr import encode_payload
from license.signed_data import LicenceMetadata, sign_licence
from license.status_list import (
    LicenceStatus,
    StatusList,
    VerifiedStatusList,
    sign_status_list,
    verify_status_list,
)
from seal.lifecycle import UseContext
from seal.pdf import PdfSealRequest
from seal.placement import Position
from seal.types import PadesLevel, SealKind
from tests.conftest import require_tool
from tests.seal.conftest import USCC, World, live_ca, one_page_pdf, world  # noqa: F401 - fixtures
from tests.seal.test_pdf import _nss, pdfsig
from tests.unchanged import unchanged

HOLDER_USCC = "11430000006122244L"
VERIFY_BASE = "https://verify.gov.example/verify/license/"
FIELDS = {
    "KZ_TYSHXYDM": HOLDER_USCC,
    "KZ_MC": "长沙示例贸易有限公司",
    "KZ_LX": "有限责任公司（自然人投资或控股）",
    "KZ_FDDBR": "王小明",
    "KZ_ZCZB": "500万元",
    "KZ_CLRQ": "2020-05-01",
    "KZ_YYQX": "2020-05-01至长期",
    "KZ_ZS": "湖南省长沙市岳麓区麓谷大道100号示例大厦15层",
    "KZ_JYFW": "软件开发；信息技术咨询服务；数据处理和存储支持服务；人工智能应用软件开发；"
    "网络技术服务。（依法须经批准的项目，经相关部门批准后方可开展经营活动）",
    "KZ_DJJG": "福州示例科技有限公司",
}


@dataclass
class Licence:
    """One issued licence of the world's department, ready to render."""

    world: World
    documents: LicenceDocuments
    context: UseContext
    doc: DocumentInput
    roots: list[x509.Certificate]
    lists: dict[str, VerifiedStatusList]

    def with_status(self, status: LicenceStatus) -> dict[str, VerifiedStatusList]:
        """Status lists in which this licence has ``status``."""
        statuses = StatusList(64)
        statuses.set(self.doc.metadata.status_index or 0, status)
        signer = DepartmentSealSigners(self.world.service, self.world.keystore)(USCC)
        token = sign_status_list(signer, statuses, uri="https://gov.example/status/" + USCC)
        return {USCC: verify_status_list(token, self.roots, issuer_code=USCC)}


def _issue(w: World, serial: str = "20230000403", **fields: str) -> DocumentInput:
    signer = DepartmentSealSigners(w.service, w.keystore)(USCC)
    today = licence_day()
    ident = str(build_identifier(BUSINESS_LICENCE_CODE, USCC, serial, 1))
    meta = LicenceMetadata(
        name="营业执照",
        type_code=BUSINESS_LICENCE_CODE,
        number=f"榕市监(2023)第{serial[-3:]}号",
        identifier=ident,
        issuer_name="福州示例科技有限公司",
        issuer_code=USCC,
        issue_date=today,
        holder_name=FIELDS["KZ_MC"],
        holder_code=HOLDER_USCC,
        holder_code_type="001",
        valid_from=today,
        valid_until=None,
        fields={**FIELDS, **fields},
        status_index=5,
        status_uri="https://gov.example/status/" + USCC,
    )
    return DocumentInput(
        business_licence([USCC]),
        meta,
        sign_licence(signer, meta),
        encode_payload(signer, meta),
        VERIFY_BASE + ident,
    )


@pytest.fixture
def licence(world: World) -> Licence:  # noqa: F811
    world.active_seal(SealKind.OFFICIAL)
    signers = DepartmentSealSigners(world.service, world.keystore)
    roots = [x509.load_der_x509_certificate(world.seal_authority.chain()[-1])]
    out = Licence(
        world, LicenceDocuments(world.sealer), signers.context(USCC), _issue(world), roots, {}
    )
    out.lists = out.with_status(LicenceStatus.VALID)
    return out


def _pyhanko(licence: Licence, pdf: bytes) -> object:
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    [sig] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    authority = licence.world.seal_authority
    root = asn1_x509.Certificate.load(authority.chain()[-1])
    hierarchy = [asn1_x509.Certificate.load(d) for d in authority.hierarchy_certificates()]
    context = ValidationContext(
        trust_roots=[root], other_certs=hierarchy, allow_fetching=False, revocation_mode="soft-fail"
    )
    return validate_pdf_signature(sig, context)


def _page_png(pdf: bytes, tmp_path: Path, dpi: int = 200) -> Path:
    binary = require_tool("pdftoppm")
    source = tmp_path / "licence.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [binary, "-r", str(dpi), "-png", "-singlefile", str(source), str(tmp_path / "page")],
        check=True,
        timeout=120,
    )
    return tmp_path / "page.png"


def test_sealed_licence_validates_shows_its_text_and_both_qr_codes_decode(
    licence: Licence,
    live_ca: str,  # noqa: F811
    tmp_path: Path,
    docs_image: Callable[[str, bytes], Path],
) -> None:
    import zxingcpp
    from PIL import Image

    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    events, _ = licence.world.service.history(licence.context.seal.id, include_uses=True)
    assert not [e for e in events if e.action == "seal_pdf"]  # make() records no use

    # two independent validators: valid, trusted, whole document, time-stamped (B-T)
    [report] = pdfsig(_nss(licence.world, tmp_path), pdf, tmp_path)
    assert "Signature is Valid" in report and "Certificate is Trusted" in report, report
    assert "Total document signed" in report, report
    status = _pyhanko(licence, pdf)
    assert status.intact and status.valid and status.trusted  # type: ignore[attr-defined]
    assert status.coverage.name == "ENTIRE_FILE"  # type: ignore[attr-defined]
    stamp = status.timestamp_validity  # type: ignore[attr-defined]
    assert stamp is not None and stamp.intact and stamp.valid and stamp.trusted
    assert status.signing_cert.dump() == licence.context.certificate_der  # type: ignore[attr-defined]

    # real text: title, holder, labels from the field schema and the values
    text = subprocess.run(
        [require_tool("pdftotext"), "-layout", "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    flowing = subprocess.run(
        [require_tool("pdftotext"), "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    packed = "".join(flowing.split())
    assert "营业执照" in packed
    for label in ("统一社会信用代码", "法定代表人", "注册资本", "经营范围", "离线核验码"):
        assert label in text, label
    for value in (
        FIELDS["KZ_MC"],
        FIELDS["KZ_FDDBR"],
        HOLDER_USCC,
        FIELDS["KZ_ZS"],
        "2020-05-01至长期",
    ):
        assert value in text, value
    assert FIELDS["KZ_JYFW"] in packed  # wrapped over lines, in reading order
    assert licence.doc.metadata.identifier in text

    # both QR codes decode from a rendering of the page to exactly the URL and the payload
    image = Image.open(_page_png(pdf, tmp_path))
    found = {
        b.text for b in zxingcpp.read_barcodes(image) if b.format == zxingcpp.BarcodeFormat.QRCode
    }
    assert found == {licence.doc.verify_url, licence.doc.qr_payload}

    # the PDF alone is enough to check the licence
    assert read_licence_pdf(pdf) == EmbeddedLicence(licence.doc.signed_data, licence.doc.qr_payload)
    check = check_pdf(pdf, licence.roots, licence.lists)
    assert check.verdict is Verdict.VALID and check.state is State.VALID, check.reasons
    assert check.identifier == licence.doc.metadata.identifier
    assert check.holder_name == FIELDS["KZ_MC"]

    # docs/licence-example.png: the sealed page at 100 dpi, palette PNG
    small = Image.open(_page_png(pdf, tmp_path, dpi=100)).convert("RGB").quantize(colors=64)
    out = io.BytesIO()
    small.save(out, "PNG", optimize=True)
    assert len(out.getvalue()) < 300 * 1024
    docs_image("licence-example.png", out.getvalue())


def test_status_and_validity_come_from_the_signed_data(licence: Licence) -> None:
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    revoked = check_pdf(pdf, licence.roots, licence.with_status(LicenceStatus.REVOKED))
    assert revoked.verdict is Verdict.INVALID and revoked.state is State.REVOKED
    unknown = check_pdf(pdf, licence.roots, {})
    assert unknown.verdict is Verdict.INDETERMINATE and "STATUS_UNKNOWN" in unknown.reasons
    later = licence_day() - timedelta(days=1)
    early = check_pdf(pdf, licence.roots, licence.lists, today=later)
    assert early.state is State.NOT_YET_VALID
    from tests.license.conftest import make_ca

    stranger = check_pdf(pdf, [make_ca().root], licence.lists)
    assert (
        stranger.verdict is Verdict.INVALID and stranger.reasons[0] == Reason.UNTRUSTED_CHAIN.value
    )


def test_tampering_and_changes_after_sealing_are_reported(licence: Licence) -> None:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    assert check_pdf(pdf, licence.roots, licence.lists).verdict is Verdict.VALID

    # one byte changed inside the signed range
    tampered = pdf.replace(b"govtrust licence documents", b"govtrust licence Documents", 1)
    assert tampered != pdf and len(tampered) == len(pdf)
    check = check_pdf(tampered, licence.roots, licence.lists)
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "PDF_SIGNATURE_INVALID", check
    assert check.identifier == licence.doc.metadata.identifier  # still names the licence

    # an incremental update after sealing that paints over the page
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    cover = generic.StreamObject(stream_data=b"q 1 g 100 300 300 80 re f Q")
    writer.add_stream_to_page(0, writer.add_object(cover))
    out = io.BytesIO()
    writer.write(out)
    check = check_pdf(out.getvalue(), licence.roots, licence.lists)
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "PDF_MODIFIED", check

    # an update that swaps in the signed data of another licence of the same department:
    # the licence is read from the signed revision and the change is reported
    other = _issue(licence.world, serial="20230000999")
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    names = writer.root["/Names"]["/EmbeddedFiles"]["/Names"]
    keys = [str(names[i]) for i in range(0, len(names), 2)]
    at = keys.index("licence.jws") * 2 + 1
    stream = names[at].get_object()["/EF"]["/F"]
    swapped = generic.StreamObject(
        {generic.NameObject("/Type"): generic.NameObject("/EmbeddedFile")},
        stream_data=other.signed_data.encode(),
    )
    spec = names[at].get_object()
    spec["/EF"] = generic.DictionaryObject({generic.NameObject("/F"): writer.add_object(swapped)})
    writer.update_container(spec)
    assert stream is not None
    out = io.BytesIO()
    writer.write(out)
    current = out.getvalue()
    assert read_licence_pdf(current).signed_data == licence.doc.signed_data  # the sealed one
    check = check_pdf(current, licence.roots, licence.lists)
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "PDF_MODIFIED", check
    assert check.identifier == licence.doc.metadata.identifier  # the sealed one, not the swap
    from pyhanko.pdf_utils.reader import PdfFileReader

    swapped_in = PdfFileReader(io.BytesIO(current)).root["/Names"]["/EmbeddedFiles"]["/Names"]
    assert swapped_in[at]["/EF"]["/F"].data == other.signed_data.encode()  # it is really there
    assert keys == ["licence-qr.txt", "licence.jws"]  # a name tree's keys are sorted


def test_a_document_time_stamp_added_later_is_allowed(licence: Licence) -> None:
    """Archival updates after sealing (a document time-stamp, PAdES B-LTA style) change
    nothing the seal covers: still VALID; a second signature is not such an update."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.timestamps import TimeStamper

    from seal.signing import CaTimeStamper

    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    stamper: TimeStamper = CaTimeStamper(licence.world.seal_authority)
    out = io.BytesIO()
    signers.PdfTimeStamper(stamper).timestamp_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)), "sha256", output=out
    )
    stamped = out.getvalue()
    assert len(stamped) > len(pdf) and stamped.startswith(pdf)
    check = check_pdf(stamped, licence.roots, licence.lists)
    assert check.verdict is Verdict.VALID, check.reasons

    # another signature appended after the seal (a form-filling change) is reported
    resealed, _, _ = licence.world.sealer.sign(
        licence.context, PdfSealRequest(licence.context.seal.id, pdf, Position(1, 100, 100))
    )
    check = check_pdf(resealed, licence.roots, licence.lists)
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "PDF_MODIFIED", check


def test_the_seal_appends_from_the_writers_outline_as_from_a_parse(licence: Licence) -> None:
    """``make_pdf`` hands the seal the writer's :class:`~seal.fastpdf.Outline` (no parse): the
    update replaces and adds the same objects, in the same places, as the parsing path, and
    checks the same; an outline that does not fit the file falls back to pyHanko's path."""
    import re

    from pyhanko.pdf_utils.reader import PdfFileReader

    from license.document import SEAL_FIELD, _page
    from license.pdf_writer import write_outlined_pdf

    page = _page(licence.doc, licence.context.seal)
    pdf, outline = write_outlined_pdf(page, licence.doc, licence.documents._certificates())
    x, y = page.layout.seal_centre
    request = PdfSealRequest(
        licence.context.seal.id, pdf, Position(1, x, y), PadesLevel.B_T, field_name=SEAL_FIELD
    )
    sealer = licence.documents.seal_pdf

    def update(sealed: bytes) -> tuple[list[bytes], dict[str, object]]:
        tail = sealed[len(pdf) :]
        objects = re.findall(rb"\n(\d+ 0) obj\n", b"\n" + tail)
        reader = PdfFileReader(io.BytesIO(sealed))
        [field] = reader.root["/AcroForm"]["/Fields"]
        widget = field.get_object()
        page_ref = reader.root["/Pages"]["/Kids"].raw_get(0)
        return objects, {
            "name": str(widget["/T"]),
            "rect": [round(float(v), 2) for v in widget["/Rect"]],
            "on_page": widget.get_value_as_reference("/P").idnum == page_ref.idnum,
            "annots": len(page_ref.get_object()["/Annots"]),
            "size": int(reader.trailer["/Size"]),
            "info": reader.trailer.raw_get("/Info").idnum,
            "first_id": reader.trailer["/ID"][0],
        }

    outlined, _, _ = sealer.sign(licence.context, replace(request, outline=outline))
    parsed, _, _ = sealer.sign(licence.context, request)
    assert update(outlined) == update(parsed)
    assert update(outlined)[1]["on_page"] and update(outlined)[1]["annots"] == 1
    for sealed in (outlined, parsed):
        check = check_pdf(sealed, licence.roots, licence.lists)
        assert check.verdict is Verdict.VALID, check.reasons
    wrong = replace(outline, startxref=outline.startxref - 1)  # not where the table starts
    fallback, _, _ = sealer.sign(licence.context, replace(request, outline=wrong))
    assert check_pdf(fallback, licence.roots, licence.lists).verdict is Verdict.VALID


def test_a_pdf_sealed_by_another_seal_is_a_signer_mismatch(licence: Licence) -> None:
    w = licence.world
    contract = w.active_seal(SealKind.CONTRACT)
    other_context = w.service.authorise_use(w.rep, contract.id, "licence")
    pdf = licence.documents.render(licence.doc, licence.context.seal)
    sealed, _, _ = w.sealer.sign(
        other_context, PdfSealRequest(contract.id, pdf, Position(1, 240, 160), PadesLevel.B_T)
    )
    check = check_pdf(sealed, licence.roots, licence.lists)
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "PDF_SIGNER_MISMATCH", check

    # the QR payload embedded must be this licence's
    other = _issue(w, serial="20230000777")
    mixed = replace(licence.doc, qr_payload=other.qr_payload)
    check = check_pdf(
        licence.documents.make_pdf(mixed, licence.context), licence.roots, licence.lists
    )
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "QR_MISMATCH", check


def test_garbage_truncated_unsealed_and_non_licence_pdfs(licence: Licence) -> None:
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    sealed_other = licence.world.sealer.sign(
        licence.context,
        PdfSealRequest(licence.context.seal.id, one_page_pdf(), Position(1, 50, 50)),
    )[0]
    for bad in (
        b"",
        b"garbage",
        b"%PDF-1.7\n garbage",
        pdf[: len(pdf) // 3],
        one_page_pdf(),
        sealed_other,
    ):
        with (
            unchanged(licence.world.db, licence.world.keystore),
            pytest.raises(LicenceVerificationFailed) as info,
        ):
            read_licence_pdf(bad)
        assert info.value.reason is Reason.MALFORMED
        check = check_pdf(bad, licence.roots, licence.lists)
        assert check.verdict is Verdict.INVALID and check.reasons[0] == "MALFORMED", check
    unsealed = licence.documents.render(licence.doc, licence.context.seal)
    assert read_licence_pdf(unsealed).signed_data == licence.doc.signed_data
    check = check_pdf(unsealed, licence.roots, licence.lists)
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "PDF_UNSEALED"
    # a broken signed data inside a sealed PDF is reported by the signed-data check
    broken = replace(licence.doc, signed_data="e30.e30.AAAA")
    check = check_pdf(
        licence.documents.make_pdf(broken, licence.context), licence.roots, licence.lists
    )
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "MALFORMED"


def test_layouts_defaults_and_overflow(licence: Licence, tmp_path: Path) -> None:
    import zxingcpp
    from PIL import Image

    btype = business_licence([USCC])
    lay = resolve_layout(btype, FIELDS, 42)
    assert (lay.width_mm, lay.height_mm) == (297.0, 210.0) and lay.title == "营业执照"
    assert lay.rows[1] == ("KZ_MC", "KZ_ZCZB") and lay.qr_corner == "top-right"
    assert lay.offline_corner == "bottom-left" and lay.seal_centre[0] > 148
    # a broken layout falls back to defaults, fields follow the schema order, one per row
    broken = replace(btype, layout={"page": "B7", "rows": "x", "seal": {"x_mm": "a"}, "qr": 3})
    lay = resolve_layout(broken, FIELDS, 42)
    assert lay.rows[0] == ("KZ_TYSHXYDM",) and len(lay.rows) == len(FIELDS)
    assert lay.qr_corner == "top-right" and lay.offline_corner == "bottom-left"
    custom = replace(
        btype, layout={"page": [210, 297], "seal": {"x_mm": 150, "y_mm": 250}, "qr": "bottom-left"}
    )
    lay = resolve_layout(custom, FIELDS, 42)
    assert (lay.width_mm, lay.seal_centre) == (210.0, (150.0, 250.0))
    assert lay.qr_corner == "bottom-left" and lay.offline_corner == "top-left"

    # the longest 经营范围 the schema allows still fits one page (cut with …), seals and checks
    long_scope = "软件开发；" * 800
    doc = _issue(licence.world, serial="20230000555", KZ_JYFW=long_scope)
    doc = replace(doc, licence_type=replace(doc.licence_type, layout=custom.layout))
    pdf = licence.documents.make_pdf(doc, licence.context)
    text = subprocess.run(
        [require_tool("pdftotext"), "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert "…" in text and text.count("\f") == 1
    assert check_pdf(pdf, licence.roots, licence.lists).verdict is Verdict.VALID
    page = _page_png(pdf, tmp_path)
    found = {b.text for b in zxingcpp.read_barcodes(Image.open(page))}
    assert found == {doc.verify_url, doc.qr_payload}

    # the seeded portrait type renders with its own labels
    ucert = uscc_certificate([USCC])
    meta = replace(doc.metadata, fields={"KZ_JGMC": "福州市示例中心", "KZ_TYSHXYDM": HOLDER_USCC})
    pdf = licence.documents.render(
        replace(doc, licence_type=ucert, metadata=meta), licence.context.seal
    )
    text = subprocess.run(
        [require_tool("pdftotext"), "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert "机构名称" in text and "福州市示例中心" in text and "持证主体" in text


def test_make_and_check_are_fast(licence: Licence) -> None:
    """One-page business licence rendered and sealed (B-T, in-process TSA), and checked from
    the PDF alone, in CPU time (figures printed with -s)."""
    pdf = licence.documents.make_pdf(licence.doc, licence.context)  # warm caches (font, appearance)
    assert check_pdf(pdf, licence.roots, licence.lists).verdict is Verdict.VALID
    runs = 10
    start = time.process_time()  # this process's CPU (the TSA is in process): not other load
    for _ in range(runs):
        licence.documents.make_pdf(licence.doc, licence.context)
    per_document = (time.process_time() - start) / runs
    start = time.process_time()
    for _ in range(runs):
        check_pdf(pdf, licence.roots, licence.lists)
    per_check = (time.process_time() - start) / runs
    print(f"make(): {per_document * 1000:.1f} ms, check_pdf(): {per_check * 1000:.1f} ms CPU")
    print(f"sealed licence PDF: {len(pdf)} bytes")
    # A guard against a gross regression only (about 70 ms each on the 2-core build machine):
    # the throughput targets are met and reported by bench/license.py, not by a timed test,
    # and a CPU-time bound this close to the figure fails on a busy CI host.
    assert per_document < 1.0 and per_check < 1.0, (per_document, per_check)


def test_check_pdf_inside_an_event_loop(licence: Licence) -> None:
    """pyHanko's synchronous validation starts its own loop: an async caller still gets a
    verdict (the validation moves to a worker thread)."""
    import asyncio

    pdf = licence.documents.make_pdf(licence.doc, licence.context)

    async def check() -> Verdict:
        return check_pdf(pdf, licence.roots, licence.lists).verdict

    assert asyncio.run(check()) is Verdict.VALID


def test_qr_symbols_are_standard_and_read_back() -> None:
    """The symbols drawn come from zxing-cpp's encoder: each is as small as segno's (the
    smallest version for the data at level M) and reads back as its data at level M."""
    import segno
    import zxingcpp
    from PIL import Image as PILImage

    from license.qr_symbol import qr_matrix

    cases = [(VERIFY_BASE + "1.2.156.3005.2.x", False)]
    cases += [("GT1:" + "6BF-NXM1:2QA$VT-1T/ROTS5" * n, True) for n in (1, 8, 16, 60)]
    versions = set()
    for data, alphanumeric in cases:
        rows = qr_matrix(data, alphanumeric=alphanumeric)
        mode = "alphanumeric" if alphanumeric else "byte"
        assert len(rows) == 17 + 4 * int(segno.make_qr(data, error="m", mode=mode).version)
        scale = 4
        image = PILImage.new("L", ((len(rows) + 8) * scale,) * 2, 255)
        for r, line in enumerate(rows):
            for c, cell in enumerate(line):
                if cell == "1":
                    box = ((c + 4) * scale, (r + 4) * scale, (c + 5) * scale, (r + 5) * scale)
                    image.paste(0, box)
        [read] = zxingcpp.read_barcodes(image)
        assert (read.text, read.ec_level) == (data, "M"), data
        versions.add(len(rows))
    assert max(versions) > 17 + 4 * 14  # alignment patterns in several rows, version information
    with pytest.raises(ValueError, match="alphanumeric"):
        qr_matrix("gt1:lower case", alphanumeric=True)


def test_qr_mask_is_the_encoders_own_choice() -> None:
    """``qr_matrix`` picks the data mask itself (from the symbol zxing-cpp makes with mask 0):
    every module, format information included, is the symbol zxing-cpp makes when it searches
    the eight masks by itself — over versions 1 to 31, byte and alphanumeric payloads."""
    import random
    import string

    import zxingcpp

    from license.qr_symbol import qr_matrix

    alphanumeric_set = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    chooser = random.Random(22)
    sizes, masks = set(), set()
    for length in (1, 7, 20, 45, 113, 200, 408, 650, 1000, 1400) * 6:
        alphanumeric = chooser.random() < 0.5
        pool = alphanumeric_set if alphanumeric else string.printable[:94]
        data = "".join(chooser.choice(pool) for _ in range(length))
        symbol = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
        image = symbol.to_image(scale=1, add_quiet_zones=False)
        pixels = memoryview(image).tobytes()  # type: ignore[arg-type]
        size = int(len(pixels) ** 0.5)
        expected = [
            "".join("1" if p < 128 else "0" for p in pixels[r * size : (r + 1) * size])
            for r in range(size)
        ]
        assert qr_matrix(data, alphanumeric=alphanumeric) == expected, (length, data)
        sizes.add(size)
        masks.add(next(m for m in range(8) if _with_mask(data, m) == pixels))
    assert min(sizes) == 21 and max(sizes) > 17 + 4 * 25, sizes
    assert len(masks) >= 5, masks  # the choice is not one fixed mask


def _with_mask(data: str, mask: int) -> bytes:
    import zxingcpp

    symbol = zxingcpp.create_barcode(
        data, zxingcpp.BarcodeFormat.QRCode, ec_level="M", data_mask=mask
    )
    return memoryview(symbol.to_image(scale=1, add_quiet_zones=False)).tobytes()  # type: ignore[arg-type]
