"""Writes a :class:`seal.ofd.model.Document` as an OFD package (GB/T 33190).

Layout::

    OFD.xml                            DocBody: DocInfo, DocRoot
    Doc_0/Document.xml                 CommonData (MaxUnitID, PageArea, PublicRes …), Pages
    Doc_0/PublicRes.xml                Fonts (Res BaseLoc="Res")
    Doc_0/DocumentRes.xml              MultiMedias (Res BaseLoc="Res")
    Doc_0/Res/font_N.ttf|otf, image_N.png|jpg
    Doc_0/Pages/Page_N/Content.xml     one body Layer of TextObject, PathObject, ImageObject
    Doc_0/Attachs/Attachments.xml      the attachments, when there are any (files beside it)

Units are numbered from 1 in that order (fonts, images, then per page the page, its layer and
its objects); ``MaxUnitID`` is the last. The same document gives the same bytes.
"""

from __future__ import annotations

from lxml import etree

from seal.errors import OfdMalformed
from seal.ofd.model import Box, Colour, Document, Font, Image, ImagePlacement, Path, Text, number
from seal.ofd.package import ROOT_FILE, OfdPackage, write_package
from seal.ofd.reader import OfdContents
from seal.ofd.xml import element, serialize

DOC_DIR = "Doc_0"
DOC_ROOT = f"{DOC_DIR}/Document.xml"
PUBLIC_RES = "PublicRes.xml"
DOCUMENT_RES = "DocumentRes.xml"
RES_DIR = "Res"
ATTACHMENTS_DIR = "Attachs"
ATTACHMENTS = f"{ATTACHMENTS_DIR}/Attachments.xml"


def _box(box: Box) -> str:
    return " ".join(number(v) for v in (box.x, box.y, box.width, box.height))


def _colour(parent: etree._Element, name: str, colour: Colour) -> None:
    element(name, {"Value": " ".join(str(c) for c in colour)}, parent=parent)


class _Ids:
    """Unit ids, handed out from 1."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        self.last += 1
        return str(self.last)


def _ofd_xml(document: Document) -> bytes:
    info = document.info
    root = element("OFD", {"Version": "1.1", "DocType": "OFD"})
    body = element("DocBody", parent=root)
    doc_info = element("DocInfo", parent=body)
    element("DocID", text=info.doc_id, parent=doc_info)
    element("CreationDate", text=info.creation_date, parent=doc_info)
    if info.creator:
        element("Creator", text=info.creator, parent=doc_info)
    if info.custom_data:
        datas = element("CustomDatas", parent=doc_info)
        for name, value in info.custom_data:
            element("CustomData", {"Name": name}, text=value, parent=datas)
    element("DocRoot", text=DOC_ROOT, parent=body)
    return serialize(root)


def _text(layer: etree._Element, text: Text, unit: str, font_id: str) -> None:
    node = element(
        "TextObject",
        {"ID": unit, "Boundary": _box(text.boundary), "Font": font_id, "Size": number(text.size)},
        parent=layer,
    )
    _colour(node, "FillColor", text.fill)
    code = {"X": number(text.x), "Y": number(text.y)}
    if text.delta_x:
        code["DeltaX"] = " ".join(number(d) for d in text.delta_x)
    element("TextCode", code, text=text.text, parent=node)


def _path(layer: etree._Element, path: Path, unit: str) -> None:
    attributes = {"ID": unit, "Boundary": _box(path.boundary)}
    attributes["LineWidth"] = number(path.line_width)
    if path.stroke is None:
        attributes["Stroke"] = "false"
    if path.fill is not None:
        attributes["Fill"] = "true"
    node = element("PathObject", attributes, parent=layer)
    if path.stroke is not None:
        _colour(node, "StrokeColor", path.stroke)
    if path.fill is not None:
        _colour(node, "FillColor", path.fill)
    element("AbbreviatedData", text=path.data, parent=node)


def _image(layer: etree._Element, placement: ImagePlacement, unit: str, resource: str) -> None:
    box = placement.boundary
    ctm = f"{number(box.width)} 0 0 {number(box.height)} 0 0"
    element(
        "ImageObject",
        {"ID": unit, "Boundary": _box(box), "CTM": ctm, "ResourceID": resource},
        parent=layer,
    )


def _resolve(table: dict[Font | Image, str], thing: Font | Image, what: str) -> str:
    found = table.get(thing)
    if found is None:
        raise OfdMalformed.at("document", f"a page uses a {what} not listed in the document")
    return found


def write_document(document: Document) -> bytes:
    """The OFD bytes of ``document`` (deterministic)."""
    return write_package(document_package(document))


def document_package(document: Document) -> OfdPackage:
    """The files of ``document`` as an OFD package (see the module docstring)."""
    return document_contents(document).package


def document_contents(document: Document) -> OfdContents:
    """The package of ``document`` with what :func:`seal.ofd.reader.read_document` would read
    back from it (page ids and files, MaxUnitID), so sealing a document just written does not
    parse it again."""
    ids = _Ids()
    page_ids: list[int] = []
    page_files: list[str] = []
    files: dict[str, bytes] = {ROOT_FILE: _ofd_xml(document)}
    font_ids: dict[Font | Image, str] = {}
    public = element("Res", {"BaseLoc": RES_DIR})
    if document.fonts:
        fonts = element("Fonts", parent=public)
        for index, font in enumerate(document.fonts):
            unit = font_ids[font] = ids.next()
            file = f"font_{index}.{font.kind}"
            node = element(
                "Font", {"ID": unit, "FontName": font.name, "FamilyName": font.family}, parent=fonts
            )
            if font.data:
                element("FontFile", text=file, parent=node)
                files[f"{DOC_DIR}/{RES_DIR}/{file}"] = font.data
    image_ids: dict[Font | Image, str] = {}
    resources = element("Res", {"BaseLoc": RES_DIR})
    if document.images:
        medias = element("MultiMedias", parent=resources)
        for index, image in enumerate(document.images):
            unit = image_ids[image] = ids.next()
            suffix = {"PNG": "png", "JPEG": "jpg"}.get(image.format, image.format.lower())
            file = f"image_{index}.{suffix}"
            node = element(
                "MultiMedia", {"ID": unit, "Type": "Image", "Format": image.format}, parent=medias
            )
            element("MediaFile", text=file, parent=node)
            files[f"{DOC_DIR}/{RES_DIR}/{file}"] = image.data
    files[f"{DOC_DIR}/{PUBLIC_RES}"] = serialize(public)
    files[f"{DOC_DIR}/{DOCUMENT_RES}"] = serialize(resources)

    page_list = element("Pages")
    for index, page in enumerate(document.pages):
        location = f"Pages/Page_{index}/Content.xml"
        page_id = ids.next()
        page_ids.append(int(page_id))
        page_files.append(f"{DOC_DIR}/{location}")
        element("Page", {"ID": page_id, "BaseLoc": location}, parent=page_list)
        root = element("Page")
        content = element("Content", parent=root)
        layer = element("Layer", {"ID": ids.next(), "Type": "Body"}, parent=content)
        for thing in page.objects:
            unit = ids.next()
            if isinstance(thing, Text):
                _text(layer, thing, unit, _resolve(font_ids, thing.font, "font"))
            elif isinstance(thing, Path):
                _path(layer, thing, unit)
            else:
                _image(layer, thing, unit, _resolve(image_ids, thing.image, "image"))
        files[f"{DOC_DIR}/{location}"] = serialize(root)

    doc = element("Document")
    common = element("CommonData", parent=doc)
    element("MaxUnitID", text=str(ids.last), parent=common)
    area = element("PageArea", parent=common)
    page_box = Box(0, 0, document.page_width, document.page_height)
    element("PhysicalBox", text=_box(page_box), parent=area)
    element("PublicRes", text=PUBLIC_RES, parent=common)
    element("DocumentRes", text=DOCUMENT_RES, parent=common)
    doc.append(page_list)
    if document.attachments:
        element("Attachments", text=ATTACHMENTS, parent=doc)
        listing = element("Attachments")
        for index, attachment in enumerate(document.attachments):
            if not attachment.format.isascii() or not attachment.format.isalnum():
                raise OfdMalformed.at("document", f"attachment format {attachment.format!r:.20}")
            file = f"attachment_{index}.{attachment.format}"
            node = element(
                "Attachment",
                {
                    "ID": f"A{index}",
                    "Name": attachment.name,
                    "Format": attachment.format,
                    "CreationDate": document.info.creation_date,
                    "Size": number(len(attachment.data) / 1024),
                    "Visible": "false",
                },
                parent=listing,
            )
            element("FileLoc", text=file, parent=node)
            files[f"{DOC_DIR}/{ATTACHMENTS_DIR}/{file}"] = attachment.data
        files[f"{DOC_DIR}/{ATTACHMENTS}"] = serialize(listing)
    files[DOC_ROOT] = serialize(doc)
    return OfdContents(
        package=OfdPackage(files),
        document=document,
        doc_root=DOC_ROOT,
        max_unit_id=ids.last,
        page_ids=tuple(page_ids),
        page_files=tuple(page_files),
    )
