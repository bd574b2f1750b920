"""OFD documents: written by seal.ofd.writer, opened and rendered by easyofd (an independent
reader), the same bytes twice, read back by seal.ofd.reader, and bad references refused."""

from __future__ import annotations

import io
import re
import subprocess
import zipfile
from pathlib import Path as FilePath

import pytest
from lxml import etree
from PIL import Image as PILImage

from seal.errors import OfdMalformed, OfdTooLarge
from seal.ofd.model import (
    Box,
    Document,
    DocumentInfo,
    Font,
    Image,
    ImagePlacement,
    Page,
    Path,
    Text,
    rectangles,
)
from seal.ofd.package import OfdPackage, read_package, write_package
from seal.ofd.reader import ReadLimits, read_document, resolve
from seal.ofd.writer import document_package, write_document
from seal.ofd.xml import OFD_NS, parse
from tests.conftest import require_tool

TITLE = "营业执照"
HOLDER = "福州示例科技有限公司"
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def easyofd_font(data: bytes) -> None:
    """Give easyofd, which draws all text in "宋体" (SimSun, a Windows font), the font ``data``.
    reportlab keeps the first TrueType font registered under a name and ignores later ones, so
    an earlier test's font is dropped first (else this test's text draws with the wrong glyphs
    whenever another easyofd test ran before it in the same process)."""
    from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
    from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]

    earlier = pdfmetrics._fonts.pop("宋体", None)
    if earlier is not None:
        pdfmetrics._dynFaceNames.pop(earlier.face.name, None)
    font = TTFont("宋体", io.BytesIO(data))
    pdfmetrics._dynFaceNames.pop(font.face.name, None)
    pdfmetrics.registerFont(font)


@pytest.fixture(scope="module")
def cjk_font() -> Font:
    """A fontTools subset of the licence font (WenQuanYi Micro Hei) with the test's characters.

    license/fonts.py has a fast subsetter, but seal may not import license, and its subsets
    carry no cmap (its PDF maps glyph ids itself), which an OFD reader needs."""
    from fontTools import subset  # type: ignore[import-untyped]
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    from license.fonts import font_path

    font = TTFont(font_path(), fontNumber=0)
    options = subset.Options()
    options.name_IDs = ["*"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=TITLE + HOLDER + "0123456789")
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return Font(name="WenQuanYi Micro Hei", family="WenQuanYi Micro Hei", data=out.getvalue())


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (16, 16), colour).save(out, "PNG")
    return out.getvalue()


def _document(font: Font, pages: int = 1) -> Document:
    image = Image(_png(BLUE))
    page = Page(
        objects=(
            Text(Box(20, 20, 120, 14), font, 10, TITLE, 0, 10, (10, 10, 10), (0, 0, 0)),
            Text(Box(20, 40, 120, 8), font, 5, HOLDER, 0, 5, (5,) * (len(HOLDER) - 1), RED),
            Path(Box(20, 60, 30, 30), rectangles([(0, 0, 30, 30)]), fill=RED),
            ImagePlacement(Box(100, 60, 30, 30), image),
        )
    )
    info = DocumentInfo(
        doc_id="3b0c1e2f9a",
        creation_date="2026-12-05",
        creator="govtrust",
        custom_data=(("ZZMC", TITLE), ("CZZT", HOLDER), ("ZZBS", "1.2.156.3005.2.11100000.0001")),
    )
    return Document(info, 210, 297, (page,) * pages, (font,), (image,))


def _ids(package: OfdPackage) -> list[int]:
    out = []
    for name, data in package.files.items():
        if name.endswith(".xml"):
            out += [int(node.get("ID", "")) for node in parse(data, name).iter() if node.get("ID")]
    return out


def test_written_document_is_rendered_by_easyofd(
    cjk_font: Font, tmp_path: FilePath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """easyofd opens the OFD and renders it to a PDF: the CJK text is extracted from it (drawn in
    the font embedded in the OFD), the red path and the blue image are where they were placed."""
    pdftotext = require_tool("pdftotext")
    pdftoppm = require_tool("pdftoppm")
    from easyofd import OFD

    data = write_document(_document(cjk_font))
    monkeypatch.chdir(tmp_path)  # easyofd unpacks into the working directory
    embedded = read_package(data).files["Doc_0/Res/font_0.ttf"]
    easyofd_font(embedded)  # easyofd draws all text in "宋体": the embedded font
    reader = OFD()
    reader.read(data, fmt="binary")
    pdf = tmp_path / "rendered.pdf"
    pdf.write_bytes(reader.to_pdf())

    text = subprocess.run(
        [pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert TITLE in text
    assert HOLDER in text

    subprocess.run([pdftoppm, "-r", "20", "-png", "-singlefile", str(pdf), "page"], check=True)
    page = PILImage.open(tmp_path / "page.png").convert("RGB")
    width, height = page.size

    def pixels(box: Box, colour: tuple[int, int, int]) -> int:
        left, top = int(box.x / 210 * width), int(box.y / 297 * height)
        right, bottom = (
            int((box.x + box.width) / 210 * width),
            int((box.y + box.height) / 297 * height),
        )
        crop = page.crop((left - 2, top - 2, right + 2, bottom + 2))
        rgb: list[tuple[int, int, int]] = list(crop.get_flattened_data())  # type: ignore[arg-type]
        return sum(
            1 for pixel in rgb if all(abs(p - c) < 60 for p, c in zip(pixel, colour, strict=True))
        )

    path_box, image_box = Box(20, 60, 30, 30), Box(100, 60, 30, 30)
    # easyofd strokes paths (it does not fill them): the square's outline is red
    assert pixels(path_box, RED) > 40
    assert pixels(image_box, BLUE) > 0.8 * (30 / 210 * width) * (30 / 297 * height)
    assert pixels(image_box, RED) == 0
    assert pixels(Box(150, 150, 40, 40), BLUE) + pixels(Box(150, 150, 40, 40), RED) == 0


def test_same_document_same_bytes(cjk_font: Font) -> None:
    first = write_document(_document(cjk_font))
    second = write_document(_document(cjk_font))
    assert first == second
    names = [info.filename for info in zipfile.ZipFile(io.BytesIO(first)).infolist()]
    assert names[0] == "OFD.xml"
    assert names[1:] == sorted(names[1:])


def test_layout_ids_and_max_unit_id(cjk_font: Font) -> None:
    package = document_package(_document(cjk_font, pages=2))
    assert set(package.files) == {
        "OFD.xml",
        "Doc_0/Document.xml",
        "Doc_0/PublicRes.xml",
        "Doc_0/DocumentRes.xml",
        "Doc_0/Res/font_0.ttf",
        "Doc_0/Res/image_0.png",
        "Doc_0/Pages/Page_0/Content.xml",
        "Doc_0/Pages/Page_1/Content.xml",
    }
    ids = _ids(package)
    assert len(ids) == len(set(ids)) == 2 + 2 * (2 + 4)  # font, image; per page: page, layer, 4
    document = parse(package.files["Doc_0/Document.xml"], "Document.xml")
    assert document.findtext(f"{{{OFD_NS}}}CommonData/{{{OFD_NS}}}MaxUnitID") == str(max(ids))
    root = parse(package.files["OFD.xml"], "OFD.xml")
    assert root.tag == f"{{{OFD_NS}}}OFD"
    assert root.prefix == "ofd"
    assert root.findtext(f".//{{{OFD_NS}}}DocRoot") == "Doc_0/Document.xml"
    content = package.files["Doc_0/Pages/Page_0/Content.xml"].decode()
    assert "M 0 0 L 30 0 L 30 30 L 0 30 C" in content
    assert 'DeltaX="10 10 10"' in content


def test_round_trip_through_reader(cjk_font: Font) -> None:
    document = _document(cjk_font, pages=3)
    contents = read_document(read_package(write_document(document)))
    assert contents.document == document
    assert contents.document.info.custom_data[0] == ("ZZMC", TITLE)
    assert contents.doc_root == "Doc_0/Document.xml"
    assert contents.page_files == tuple(f"Doc_0/Pages/Page_{i}/Content.xml" for i in range(3))
    assert len(set(contents.page_ids)) == 3
    assert contents.max_unit_id == max(_ids(contents.package))


# --- bad documents ---------------------------------------------------------------------------


def _replace(package: OfdPackage, name: str, data: bytes | None) -> OfdPackage:
    files = dict(package.files)
    if data is None:
        del files[name]
    else:
        files[name] = data
    return read_package(write_package(OfdPackage(files)))


def _with_doc_root(package: OfdPackage, doc_root: str) -> OfdPackage:
    ofd = package.files["OFD.xml"].replace(b"Doc_0/Document.xml", doc_root.encode())
    return _replace(package, "OFD.xml", ofd)


@pytest.mark.parametrize(
    ("doc_root", "message"),
    [
        ("../Doc_0/Document.xml", "points outside the package"),
        ("Doc_0/../../etc/passwd", "points outside the package"),
        ("file:///etc/passwd", "not a location inside the package"),
        ("C:\\Doc_0\\Document.xml", "not a location inside the package"),
        ("/etc/passwd", "'etc/passwd', not in the package"),
    ],
)
def test_doc_root_outside_the_package(cjk_font: Font, doc_root: str, message: str) -> None:
    package = _with_doc_root(document_package(_document(cjk_font)), doc_root)
    with pytest.raises(OfdMalformed, match=r"OFD\.xml") as caught:
        read_document(package)
    assert message in caught.value.message


def test_missing_page_file(cjk_font: Font) -> None:
    package = _replace(
        document_package(_document(cjk_font, pages=2)), "Doc_0/Pages/Page_1/Content.xml", None
    )
    with pytest.raises(OfdMalformed) as caught:
        read_document(package)
    assert caught.value.message == (
        "ofd: Doc_0/Document.xml: refers to 'Doc_0/Pages/Page_1/Content.xml', not in the package"
    )


def test_missing_font_file(cjk_font: Font) -> None:
    package = _replace(document_package(_document(cjk_font)), "Doc_0/Res/font_0.ttf", None)
    with pytest.raises(
        OfdMalformed, match=re.escape("Doc_0/PublicRes.xml: refers to 'Doc_0/Res/font_0.ttf'")
    ):
        read_document(package)


def test_page_count_over_the_limit(cjk_font: Font) -> None:
    package = document_package(_document(cjk_font, pages=3))
    with pytest.raises(OfdTooLarge) as caught:
        read_document(package, ReadLimits(max_pages=2))
    assert (caught.value.limit, caught.value.count, caught.value.allowed) == (
        "number of pages",
        3,
        2,
    )


def test_huge_page_count_refused_before_reading_pages(cjk_font: Font) -> None:
    """100,001 page entries whose files do not exist: refused by count, no page is looked up."""
    package = document_package(_document(cjk_font))
    document = package.files["Doc_0/Document.xml"]
    pages = b"".join(
        b'<ofd:Page ID="%d" BaseLoc="Pages/Page_%d/Content.xml"/>' % (i, i)
        for i in range(10, 100_011)
    )
    document = document.replace(b"<ofd:Pages>", b"<ofd:Pages>" + pages)
    with pytest.raises(OfdTooLarge, match="number of pages is at least 100002"):
        read_document(_replace(package, "Doc_0/Document.xml", document))


def test_duplicate_unit_id(cjk_font: Font) -> None:
    package = document_package(_document(cjk_font))
    content = package.files["Doc_0/Pages/Page_0/Content.xml"].replace(b'ID="6"', b'ID="5"')
    with pytest.raises(OfdMalformed, match=re.escape("Page_0/Content.xml: ID 5 is used twice")):
        read_document(_replace(package, "Doc_0/Pages/Page_0/Content.xml", content))


def test_undeclared_font(cjk_font: Font) -> None:
    package = document_package(_document(cjk_font))
    content = package.files["Doc_0/Pages/Page_0/Content.xml"].replace(b'Font="1"', b'Font="4"')
    with pytest.raises(OfdMalformed, match="TextObject uses undeclared font 4"):
        read_document(_replace(package, "Doc_0/Pages/Page_0/Content.xml", content))


def test_resolve_relative_and_absolute() -> None:
    assert resolve("Pages/Page_0/Content.xml", "Doc_0", "x") == "Doc_0/Pages/Page_0/Content.xml"
    assert resolve("/Doc_0/Res/a.png", "Doc_0/Res", "x") == "Doc_0/Res/a.png"
    assert resolve("../Res/a.png", "Doc_0/Pages", "x") == "Doc_0/Res/a.png"
    assert resolve("./a.png", "Doc_0", "x") == "Doc_0/a.png"


def test_element_tree_is_lxml() -> None:
    """The writer's XML is real XML: every file parses and carries the OFD namespace."""
    root = parse(b'<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"/>', "OFD.xml")
    assert isinstance(root, etree._Element)


# --- what real producers write ---------------------------------------------------------------


def _edit(package: OfdPackage, edits: dict[str, tuple[bytes, bytes]]) -> OfdPackage:
    files = dict(package.files)
    for name, (old, new) in edits.items():
        assert old in files[name]
        files[name] = files[name].replace(old, new)
    return read_package(write_package(OfdPackage(files)))


def test_pre_2016_namespace_is_read(cjk_font: Font) -> None:
    document = _document(cjk_font)
    package = document_package(document)
    legacy = {
        name: (b"http://www.ofdspec.org/2016", b"http://www.ofdspec.org")
        for name in package.files
        if name.endswith(".xml")
    }
    assert read_document(_edit(package, legacy)).document == document


def test_missing_max_unit_id_and_object_ids(cjk_font: Font) -> None:
    """The national e-invoice sample has neither; the largest id read stands in for MaxUnitID."""
    document = _document(cjk_font)
    package = _edit(
        document_package(document),
        {
            "Doc_0/Document.xml": (b"<ofd:MaxUnitID>8</ofd:MaxUnitID>", b""),
            "Doc_0/Pages/Page_0/Content.xml": (b' ID="8"', b""),
        },
    )
    contents = read_document(package)
    assert contents.document == document
    assert contents.max_unit_id == 7


def test_delta_x_beyond_the_text_is_dropped(cjk_font: Font) -> None:
    package = _edit(
        document_package(_document(cjk_font)),
        {"Doc_0/Pages/Page_0/Content.xml": (b'DeltaX="10 10 10"', b'DeltaX="g 999999999 2.5"')},
    )
    title = read_document(package).document.pages[0].objects[0]
    assert isinstance(title, Text)
    assert title.delta_x == (2.5, 2.5, 2.5)


def test_negative_delta_x_count(cjk_font: Font) -> None:
    package = _edit(
        document_package(_document(cjk_font)),
        {"Doc_0/Pages/Page_0/Content.xml": (b'DeltaX="10 10 10"', b'DeltaX="g -2 2.5"')},
    )
    with pytest.raises(OfdMalformed, match="negative count"):
        read_document(package)


def test_resources_from_the_package_root(cjk_font: Font) -> None:
    """``BaseLoc="/"`` and absolute file locations, as some producers write them."""
    document = _document(cjk_font)
    package = _edit(
        document_package(document),
        {
            "Doc_0/PublicRes.xml": (b'BaseLoc="Res"', b'BaseLoc="/"'),
            "Doc_0/DocumentRes.xml": (b"image_0.png<", b"/Doc_0/Res/image_0.png<"),
        },
    )
    package = _edit(package, {"Doc_0/PublicRes.xml": (b">font_0.ttf<", b">Doc_0/Res/font_0.ttf<")})
    assert read_document(package).document == document


def test_text_xml_cannot_carry(cjk_font: Font) -> None:
    document = _document(cjk_font)
    info = DocumentInfo("id", "2026-12-05", custom_data=(("ZZMC", "bad\x00value"),))
    with pytest.raises(OfdMalformed, match="ofd:CustomData: not XML text"):
        write_document(Document(info, 210, 297, document.pages, document.fonts, document.images))


def test_stale_max_unit_id_and_hex_colour(cjk_font: Font) -> None:
    """MaxUnitID smaller than an id in use: the largest id stands in, so a new unit (a seal's
    annotation) cannot collide; colours written in hex read as numbers."""
    document = _document(cjk_font)
    package = _edit(
        document_package(document),
        {
            "Doc_0/Document.xml": (b"<ofd:MaxUnitID>8<", b"<ofd:MaxUnitID>4<"),
            "Doc_0/Pages/Page_0/Content.xml": (b'Value="255 0 0"', b'Value="#ff #0 #00"'),
        },
    )
    contents = read_document(package)
    assert contents.max_unit_id == 8
    assert contents.document == document


@pytest.mark.parametrize("unit", ["9" * 5000, "-3", "0", "1e3", "٣"])
def test_bad_unit_ids(cjk_font: Font, unit: str) -> None:
    package = _edit(
        document_package(_document(cjk_font)),
        {"Doc_0/Pages/Page_0/Content.xml": (b'ID="5"', f'ID="{unit}"'.encode())},
    )
    with pytest.raises(OfdMalformed, match="TextObject has no valid ID"):
        read_document(package)


def test_attachments_round_trip_and_their_limits(cjk_font: Font) -> None:
    from dataclasses import replace

    from seal.ofd.model import Attachment

    attached = (Attachment("licence.jws", "jws", b"e30.e30.sig"), Attachment("注.txt", "txt", b"x"))
    package = document_package(replace(_document(cjk_font), attachments=attached))
    listing = etree.fromstring(package.files["Doc_0/Attachs/Attachments.xml"])
    ns = {"ofd": OFD_NS}
    assert [a.get("Name") for a in listing.findall("ofd:Attachment", ns)] == [
        "licence.jws",
        "注.txt",
    ]
    assert (
        etree.fromstring(package.files["Doc_0/Document.xml"]).findtext(
            "ofd:Attachments", namespaces=ns
        )
        == "Attachs/Attachments.xml"
    )
    assert read_document(package).document.attachments == attached
    with pytest.raises(OfdTooLarge, match="number of attachments"):
        read_document(package, ReadLimits(max_attachments=1))
    missing = _replace(package, "Doc_0/Attachs/attachment_0.jws", None)
    with pytest.raises(OfdMalformed, match=r"attachment_0\.jws"):
        read_document(missing)
    with pytest.raises(OfdMalformed, match="attachment format"):
        document_package(replace(_document(cjk_font), attachments=(Attachment("x", "../x", b""),)))


def test_written_contents_are_what_the_reader_reads_back(cjk_font: Font) -> None:
    from seal.ofd.writer import document_contents

    written = document_contents(_document(cjk_font, pages=3))
    read = read_document(written.package)
    assert (written.doc_root, written.page_ids, written.page_files, written.max_unit_id) == (
        read.doc_root,
        read.page_ids,
        read.page_files,
        read.max_unit_id,
    )
    assert written.document.pages == read.document.pages


def test_grid_rectangles_are_the_rectangles_of_their_cells() -> None:
    from seal.ofd.model import grid_rectangles, rectangles

    runs = [(0, 0, 3), (2, 1, 2), (4, 4, 5)]
    cell = 0.37
    assert grid_rectangles(runs, cell, 5) == rectangles(
        [(c0 * cell, r * cell, (c1 - c0) * cell, cell) for r, c0, c1 in runs]
    )
