"""The licence as OFD: written by license.ofd_writer, read back by seal.ofd.reader (metadata in
``CustomDatas``, the page's objects), rendered by easyofd (an independent reader) to a PDF whose
text pdftotext extracts, and both QR codes decoded by zxing-cpp.

easyofd only strokes paths (it draws the QR modules as outlines), so the QR codes are decoded
from an image this test fills itself from the module squares seal.ofd.reader reads back.
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from license.layout import lay_out
from license.ofd_writer import CA_FILE, METADATA_NAMES
from seal.ofd import model
from seal.ofd.package import read_package
from seal.ofd.reader import read_document
from seal.pdf import design_of
from tests.conftest import require_tool
from tests.license.test_document import FIELDS, HOLDER_USCC, Licence, licence  # noqa: F401
from tests.seal.conftest import world  # noqa: F401 - fixtures

CREATED = date(2026, 12, 5)
_SQUARE = re.compile(r"M (\S+) (\S+) L (\S+) \S+ L \S+ (\S+) L \S+ \S+ C")


def _ofd(licence: Licence) -> bytes:  # noqa: F811
    return licence.documents.render_ofd(licence.doc, licence.context.seal, CREATED)


def _squares(path: model.Path) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of each closed rectangle of ``path``, on the page (mm)."""
    box = path.boundary
    return [
        (box.x + float(x0), box.y + float(y0), box.x + float(x1), box.y + float(y1))
        for x0, y0, x1, y1 in _SQUARE.findall(path.data)
    ]


def test_metadata_and_page_objects_read_back(licence: Licence) -> None:  # noqa: F811
    contents = read_document(read_package(_ofd(licence)))
    document = contents.document
    meta = licence.doc.metadata
    assert dict(document.info.custom_data) == {
        "ZZMC": "营业执照",
        "ZZLXDM": meta.type_code,
        "ZZBH": meta.number,
        "ZZBS": meta.identifier,
        "ZZBFJG": "福州示例科技有限公司",
        "ZZBFJGDM": meta.issuer_code,
        "ZZBFRQ": meta.issue_date.isoformat(),
        "CZZT": FIELDS["KZ_MC"],
        "CZZTDM": HOLDER_USCC,
        "CZZTDMLX": "001",
        "ZZYXQQSRQ": meta.valid_from.isoformat(),
        "ZZYXQJZRQ": "长期",
    }
    assert [name for name, _ in document.info.custom_data] == list(METADATA_NAMES)
    assert document.info.creation_date == "2026-12-05"

    [page] = document.pages
    texts = [o.text for o in page.objects if isinstance(o, model.Text)]
    assert "营业执照" in texts and FIELDS["KZ_MC"] in texts
    assert f"证照标识：{meta.identifier}" in texts
    assert (document.page_width, document.page_height) == (297, 210)

    # the embedded font draws every character through its own cmap
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    [font] = document.fonts
    cmap = TTFont(io.BytesIO(font.data)).getBestCmap()
    assert {ord(c) for c in "".join(texts)} <= set(cmap)

    # the signed data and the QR payload ride along as attachments, as in the PDF, and the CA
    # certificates but the roots (the PDF's /DSS) so that a root alone checks the seal
    attached = {a.name: a.data for a in document.attachments}
    assert attached.pop(CA_FILE).count(b"-----BEGIN CERTIFICATE-----") == len(
        licence.documents._certificates()
    )
    assert {(name, data.decode()) for name, data in attached.items()} == {
        ("licence.jws", licence.doc.signed_data),
        ("licence-qr.txt", licence.doc.qr_payload),
    }
    # unsealed, the seal area is blank: no picture anywhere, no signature
    assert not [o for o in page.objects if isinstance(o, model.ImagePlacement)]
    assert document.images == ()
    assert not [name for name in contents.package.files if "Signs/" in name]

    # frames stroked, QR squares filled (two white squares and two sets of modules)
    paths = [o for o in page.objects if isinstance(o, model.Path)]
    assert len([p for p in paths if p.stroke is not None and p.fill is None]) == 2
    assert len([p for p in paths if p.fill == (255, 255, 255)]) == 2
    assert len([p for p in paths if p.fill == (0, 0, 0)]) == 2


def test_easyofd_renders_the_sealed_licence_text_seal_and_both_qr_codes_decode(
    licence: Licence,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    docs_image: Callable[[str, bytes], Path],
) -> None:
    pdftotext = require_tool("pdftotext")
    pdftoppm = require_tool("pdftoppm")
    import zxingcpp
    from easyofd import OFD

    from tests.seal.test_ofd_document import easyofd_font

    data = licence.documents.make_ofd(licence.doc, licence.context, CREATED).ofd
    monkeypatch.chdir(tmp_path)  # easyofd unpacks into the working directory
    embedded = read_package(data).files["Doc_0/Res/font_0.ttf"]
    easyofd_font(embedded)  # easyofd's only text font
    reader = OFD()
    reader.read(data, fmt="binary")
    pdf = tmp_path / "rendered.pdf"
    pdf.write_bytes(reader.to_pdf())
    text = subprocess.run(
        [pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    packed = "".join(text.split())
    for expected in (
        "营业执照",
        "统一社会信用代码",
        "法定代表人",
        "离线核验码",
        FIELDS["KZ_MC"],
        FIELDS["KZ_FDDBR"],
        HOLDER_USCC,
        licence.doc.metadata.identifier,
    ):
        assert expected in packed, expected

    # the red seal, drawn by easyofd from the picture in the signature at its StampAnnot
    subprocess.run(
        [pdftoppm, "-r", "100", "-png", "-singlefile", str(pdf), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    page = PILImage.open(tmp_path / "page.png").convert("RGB")
    width, height = design_of(licence.context.seal).size_mm()
    cx, cy = lay_out(licence.doc, max(width, height)).layout.seal_centre
    px = page.size[0] / 297

    def red(left: float, top: float, right: float, bottom: float) -> int:
        box = (int(left * px), int(top * px), int(right * px), int(bottom * px))
        pixels: list[tuple[int, int, int]] = list(page.crop(box).get_flattened_data())  # type: ignore[arg-type]
        return sum(1 for r, g, b in pixels if r > 150 and g < 90 and b < 90)

    half = width / 2
    assert red(cx - half, cy - half, cx + half, cy + half) > 500
    assert red(5, 5, 5 + width, 5 + width) == 0  # nowhere else
    # docs/licence-example-ofd.png: the sealed OFD as easyofd renders it, palette PNG
    small = page.quantize(colors=64)
    out = io.BytesIO()
    small.save(out, "PNG", optimize=True)
    docs_image("licence-example-ofd.png", out.getvalue())

    # the QR module squares as read back, filled at 12 px/mm on a white page
    document = read_document(read_package(data)).document
    scale = 12
    image = PILImage.new("L", (297 * scale, 210 * scale), 255)
    draw = ImageDraw.Draw(image)
    modules = [
        o for o in document.pages[0].objects if isinstance(o, model.Path) and o.fill == (0, 0, 0)
    ]
    for path in modules:
        for x0, y0, x1, y1 in _squares(path):
            draw.rectangle(
                (x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1), fill=0, outline=None
            )
    found = {
        b.text for b in zxingcpp.read_barcodes(image) if b.format == zxingcpp.BarcodeFormat.QRCode
    }
    assert found == {licence.doc.verify_url, licence.doc.qr_payload}


def test_same_licence_same_bytes(licence: Licence) -> None:  # noqa: F811
    first = _ofd(licence)
    assert _ofd(licence) == first
    other_day = licence.documents.render_ofd(licence.doc, licence.context.seal, date(2027, 1, 1))
    assert other_day != first


def test_sealed_licence_stamp_at_the_seal_area_over_every_file(
    licence: Licence,  # noqa: F811
) -> None:
    from lxml import etree

    from tests.seal import gbt38540

    sealed = licence.documents.make_ofd(licence.doc, licence.context, CREATED)
    package = read_package(sealed.ofd)
    ns = {"ofd": "http://www.ofdspec.org/2016"}
    signature_xml = package.files["Doc_0/Signs/Sign_0/Signature.xml"]
    signature = etree.fromstring(signature_xml)
    [stamp] = signature.findall(".//ofd:StampAnnot", ns)
    width, height = design_of(licence.context.seal).size_mm()
    layout = lay_out(licence.doc, max(width, height)).layout
    x, y, w, h = (float(v) for v in str(stamp.get("Boundary")).split())
    assert (w, h) == pytest.approx((width, height))
    assert (x + w / 2, y + h / 2) == pytest.approx(layout.seal_centre, abs=0.001)
    refs = {str(n.get("FileRef")) for n in signature.iterfind(".//ofd:Reference", ns)}
    assert {"/OFD.xml", "/Doc_0/Pages/Page_0/Content.xml", "/Doc_0/Res/font_0.ttf"} <= refs
    ses = gbt38540.parse_signature(package.files["Doc_0/Signs/Sign_0/SignedValue.dat"])
    assert ses.seal.der == licence.context.seal.seal_structure
    assert ses.data_hash == sealed.data_hash
    assert ses.time_stamp is not None
    # the metadata is the unsealed rendering's, unchanged
    unsealed = read_package(_ofd(licence))
    assert (
        package.files["Doc_0/Pages/Page_0/Content.xml"]
        == (unsealed.files["Doc_0/Pages/Page_0/Content.xml"])
    )


@pytest.mark.parametrize("line", ["", "0", "1", "0110111", "1000001", "11111", "0101010"])
def test_dark_runs_are_the_runs_of_ones(line: str) -> None:
    from license.ofd_writer import _dark_runs

    expected = [(7, 4 + m.start(), 4 + m.end()) for m in re.finditer("1+", line)]
    assert _dark_runs(7, line) == expected
