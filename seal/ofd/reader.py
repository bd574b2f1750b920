"""Reads an OFD package back into the model: OFD.xml → DocRoot → Document.xml → resources, pages.

Every reference (``DocRoot``, ``PublicRes``/``DocumentRes`` and their ``BaseLoc``, ``FontFile``,
``MediaFile``, page ``BaseLoc``) is resolved inside the package: absolute locations from the
package root, relative ones from the referring file's folder; one that climbs out of the package,
is a URL, or names a file the package lacks is :class:`OfdMalformed` naming the referring file.
Unit ids must be integers (at most ten digits) and unique; ``max_unit_id`` is the larger of the
declared ``MaxUnitID`` and the largest id read (some producers omit it or leave it too small); fonts
and images an object uses must be declared. Colours may be written in hex (``#FF #00 #00``).
The pre-2016 namespace ``http://www.ofdspec.org`` (still in documents from 2020) is read as
:data:`seal.ofd.xml.OFD_NS`. Graphic objects may lack an ID (the national e-invoice sample's
do). The page count is limited before any page is read (:class:`ReadLimits`).

Attachments (``Document.xml`` → ``Attachments``) are read with their files, at most
``max_attachments``. Only the first ``DocBody`` is read; text, path and image objects are read
from every layer (and page block) of a page's content, other objects are skipped; a
``TextObject`` with several ``TextCode`` elements gives one :class:`Text` each. A font without
``FontFile`` (a system font) reads as a font with empty data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from seal.errors import OfdMalformed, OfdTooLarge
from seal.ofd.model import (
    BLACK,
    Attachment,
    Box,
    Colour,
    Document,
    DocumentInfo,
    Font,
    GraphicObject,
    Image,
    ImagePlacement,
    Page,
    Path,
    Text,
)
from seal.ofd.package import ROOT_FILE, OfdPackage, check_name
from seal.ofd.xml import (
    OFD_NS,
    adopt_legacy_namespace,
    child,
    child_text,
    children,
    local_name,
    parse,
    tag,
)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HEX = re.compile(r"^#[0-9A-Fa-f]{1,2}$")
_UNIT = re.compile(r"^[0-9]{1,10}$")


def _unit_number(raw: str | None) -> int | None:
    """``raw`` as a unit id (ASCII digits, at most ten), or None."""
    return int(raw) if raw is not None and _UNIT.match(raw.strip()) else None


@dataclass(frozen=True)
class ReadLimits:
    """How much of an untrusted OFD document is read."""

    max_pages: int = 1_000
    max_attachments: int = 100


DEFAULT_READ_LIMITS = ReadLimits()


@dataclass(frozen=True)
class OfdContents:
    """A read OFD: the model, where its parts are, and the package itself (for sealing)."""

    package: OfdPackage
    document: Document
    doc_root: str
    max_unit_id: int
    page_ids: tuple[int, ...]
    page_files: tuple[str, ...]


def resolve(location: str, folder: str, referrer: str, *, is_folder: bool = False) -> str:
    """The package path ``location`` names, seen from ``folder`` (``""`` is the root, which
    only a folder may name)."""
    location = location.strip()
    if not location:
        raise OfdMalformed.at(referrer, "an empty location")
    if _SCHEME.match(location) or "\\" in location or "\0" in location:
        raise OfdMalformed.at(referrer, f"{location!r} is not a location inside the package")
    parts = [] if location.startswith("/") else [p for p in folder.split("/") if p]
    for part in location.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise OfdMalformed.at(referrer, f"{location!r} points outside the package")
            parts.pop()
        else:
            parts.append(part)
    path = "/".join(parts)
    if path or not is_folder:
        check_name(path)
    return path


def _folder(path: str) -> str:
    return path.rpartition("/")[0]


def _numbers(text: str | None, count: int, where: str, what: str) -> list[float]:
    values = (text or "").split()
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise OfdMalformed.at(where, f"{what} {text!r} is not {count} numbers") from None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise OfdMalformed.at(where, f"{what} {text!r} is not {count} numbers")
    return numbers


def _box(text: str | None, where: str, what: str) -> Box:
    return Box(*_numbers(text, 4, where, what))


def _colour(node: etree._Element, name: str, where: str) -> Colour | None:
    found = child(node, name)
    if found is None:
        return None
    raw = (found.get("Value") or "").split()
    if len(raw) == 3 and all(_HEX.match(v) for v in raw):  # "#FF #00 #00" (GB/T 33190 allows it)
        values = [float(int(v[1:], 16)) for v in raw]
    else:
        values = _numbers(found.get("Value"), 3, where, name)
    if not all(0 <= v <= 255 for v in values):
        raise OfdMalformed.at(where, f"{name} {values} outside 0–255")
    return (int(values[0]), int(values[1]), int(values[2]))


def _deltas(text: str | None, limit: int, where: str) -> tuple[float, ...]:
    """``DeltaX`` with its ``g count value`` runs expanded; values past ``limit`` (one fewer than
    the characters) are dropped, as producers often write too many (also huge ``g`` counts)."""
    tokens = (text or "").split()
    if len(tokens) > 3 * (limit + 1) + 3:
        raise OfdMalformed.at(where, "DeltaX has far more values than characters")
    out: list[float] = []
    at = 0
    try:
        while at < len(tokens) and len(out) < limit:
            if tokens[at] == "g":
                count, value = int(tokens[at + 1]), float(tokens[at + 2])
                if count < 0:
                    raise OfdMalformed.at(where, f"DeltaX {text!r} has a negative count")
                out += [value] * min(count, limit - len(out))
                at += 3
            else:
                out.append(float(tokens[at]))
                at += 1
    except (ValueError, IndexError):
        raise OfdMalformed.at(where, f"DeltaX {text!r} is malformed") from None
    if not all(math.isfinite(v) for v in out):
        raise OfdMalformed.at(where, f"DeltaX {text!r} has a value that is not a number")
    return tuple(out)


class _Units:
    """The unit ids seen so far, checked unique; MaxUnitID as declared or, when a producer left
    it absent or too small, the largest id seen (a new unit then never collides)."""

    def __init__(self, max_unit_id: int | None) -> None:
        self.declared = max_unit_id
        self.seen: set[int] = set()

    @property
    def max(self) -> int:
        """The larger of the declared MaxUnitID and the largest id seen."""
        return max(self.declared or 0, max(self.seen, default=0))

    def take_if_any(self, node: etree._Element, where: str) -> None:
        """Checks the element's ID when it has one (graphic objects without an ID are common)."""
        if node.get("ID") is not None:
            self.take(node, where)

    def take(self, node: etree._Element, where: str) -> int:
        raw = node.get("ID")
        unit = _unit_number(raw)
        if not unit:
            raise OfdMalformed.at(where, f"{local_name(node)} has no valid ID ({raw!r:.40})")
        if unit in self.seen:
            raise OfdMalformed.at(where, f"ID {unit} is used twice")
        self.seen.add(unit)
        return unit


def _parse(package: OfdPackage, path: str, referrer: str, root: str) -> etree._Element:
    node = adopt_legacy_namespace(parse(package.read(path, referrer), path))
    if node.tag != tag(root):
        raise OfdMalformed.at(path, f"the root element is {node.tag!r}, not ofd:{root} in {OFD_NS}")
    return node


class _Reader:
    """One read of a package (see the module docstring)."""

    def __init__(self, package: OfdPackage, limits: ReadLimits) -> None:
        self.package = package
        self.limits = limits
        self.fonts: dict[int, Font] = {}
        self.images: dict[int, Image] = {}

    def info(self, body: etree._Element) -> DocumentInfo:
        node = child(body, "DocInfo")
        if node is None:
            return DocumentInfo(doc_id="", creation_date="")
        custom: list[tuple[str, str]] = []
        datas = child(node, "CustomDatas")
        for data in [] if datas is None else children(datas, "CustomData"):
            custom.append((data.get("Name", ""), data.text or ""))
        return DocumentInfo(
            doc_id=child_text(node, "DocID") or "",
            creation_date=child_text(node, "CreationDate") or "",
            creator=child_text(node, "Creator") or "",
            custom_data=tuple(custom),
        )

    def resources(self, path: str, referrer: str, units: _Units) -> None:
        res = _parse(self.package, path, referrer, "Res")
        base = res.get("BaseLoc")
        folder = resolve(base, _folder(path), path, is_folder=True) if base else _folder(path)
        for fonts in children(res, "Fonts"):
            for font in children(fonts, "Font"):
                unit = units.take(font, path)
                file = child_text(font, "FontFile")
                location = resolve(file, folder, path) if file else ""
                self.fonts[unit] = Font(
                    name=font.get("FontName", ""),
                    family=font.get("FamilyName", ""),
                    data=self.package.read(location, path) if location else b"",
                    kind="otf" if location.lower().endswith(".otf") else "ttf",
                )
        for medias in children(res, "MultiMedias"):
            for media in children(medias, "MultiMedia"):
                unit = units.take(media, path)
                file = child_text(media, "MediaFile")
                if media.get("Type", "Image") != "Image":
                    continue
                if not file:
                    raise OfdMalformed.at(path, f"MultiMedia {unit} has no MediaFile")
                location = resolve(file, folder, path)
                suffix = location.rpartition(".")[2].upper()
                declared = media.get("Format") or ("JPEG" if suffix in ("JPG", "JPEG") else suffix)
                self.images[unit] = Image(
                    data=self.package.read(location, path),
                    format="JPEG" if declared.upper() in ("JPG", "JPEG") else declared.upper(),
                )

    def _graphics(self, node: etree._Element) -> Iterator[etree._Element]:
        for item in node:
            if not isinstance(item.tag, str):
                continue
            name = local_name(item)
            if name in ("TextObject", "PathObject", "ImageObject"):
                yield item
            elif name in ("Layer", "PageBlock"):
                yield from self._graphics(item)

    def _reference(self, node: etree._Element, attribute: str, where: str) -> int:
        raw = node.get(attribute, "")
        unit = _unit_number(raw)
        if unit is None:
            raise OfdMalformed.at(where, f"{local_name(node)} has a bad {attribute} {raw!r:.40}")
        return unit

    def page(self, path: str, referrer: str, units: _Units) -> Page:
        root = _parse(self.package, path, referrer, "Page")
        objects: list[GraphicObject] = []
        content = child(root, "Content")
        for node in [] if content is None else self._graphics(content):
            units.take_if_any(node, path)
            boundary = _box(node.get("Boundary"), path, "Boundary")
            name = local_name(node)
            if name == "TextObject":
                font = self.fonts.get(self._reference(node, "Font", path))
                if font is None:
                    raise OfdMalformed.at(
                        path, f"TextObject uses undeclared font {node.get('Font')}"
                    )
                size = _numbers(node.get("Size"), 1, path, "Size")[0]
                fill = _colour(node, "FillColor", path) or BLACK
                for code in children(node, "TextCode"):
                    text = code.text or ""
                    objects.append(
                        Text(
                            boundary=boundary,
                            font=font,
                            size=size,
                            text=text,
                            x=_numbers(code.get("X", "0"), 1, path, "X")[0],
                            y=_numbers(code.get("Y", "0"), 1, path, "Y")[0],
                            delta_x=_deltas(code.get("DeltaX"), max(len(text) - 1, 0), path),
                            fill=fill,
                        )
                    )
            elif name == "PathObject":
                fill = _colour(node, "FillColor", path) or BLACK
                stroke = _colour(node, "StrokeColor", path) or BLACK
                objects.append(
                    Path(
                        boundary=boundary,
                        data=(child_text(node, "AbbreviatedData") or "").strip(),
                        fill=fill if node.get("Fill", "false") == "true" else None,
                        stroke=stroke if node.get("Stroke", "true") == "true" else None,
                        line_width=_numbers(node.get("LineWidth", "0.353"), 1, path, "LineWidth")[
                            0
                        ],
                    )
                )
            else:
                image = self.images.get(self._reference(node, "ResourceID", path))
                if image is None:
                    raise OfdMalformed.at(
                        path, f"ImageObject uses undeclared resource {node.get('ResourceID')}"
                    )
                objects.append(ImagePlacement(boundary=boundary, image=image))
        return Page(objects=tuple(objects))


def _attachments(
    package: OfdPackage, doc: etree._Element, doc_root: str, limits: ReadLimits
) -> tuple[Attachment, ...]:
    """The attachments ``Document.xml`` lists (``Attachments`` → Attachments.xml)."""
    location = child_text(doc, "Attachments")
    if not location or not location.strip():
        return ()
    path = resolve(location, _folder(doc_root), doc_root)
    root = _parse(package, path, doc_root, "Attachments")
    nodes = children(root, "Attachment")
    if len(nodes) > limits.max_attachments:
        raise OfdTooLarge("number of attachments", path, len(nodes), limits.max_attachments)
    found = []
    for node in nodes:
        file = child_text(node, "FileLoc")
        if not file:
            raise OfdMalformed.at(path, f"attachment {node.get('Name', '')!r:.40} has no FileLoc")
        data = package.read(resolve(file, _folder(path), path), path)
        found.append(Attachment(node.get("Name", ""), node.get("Format", ""), data))
    return tuple(found)


def read_document(package: OfdPackage, limits: ReadLimits = DEFAULT_READ_LIMITS) -> OfdContents:
    """The document in ``package`` (see the module docstring for what is checked)."""
    root = _parse(package, ROOT_FILE, "package", "OFD")
    body = child(root, "DocBody")
    if body is None:
        raise OfdMalformed.at(ROOT_FILE, "no DocBody")
    doc_root_text = child_text(body, "DocRoot")
    if not doc_root_text:
        raise OfdMalformed.at(ROOT_FILE, "no DocRoot")
    doc_root = resolve(doc_root_text, "", ROOT_FILE)
    reader = _Reader(package, limits)
    info = reader.info(body)

    doc = _parse(package, doc_root, ROOT_FILE, "Document")
    folder = _folder(doc_root)
    common = child(doc, "CommonData")
    if common is None:
        raise OfdMalformed.at(doc_root, "no CommonData")
    max_text = (child_text(common, "MaxUnitID") or "").strip()
    declared = _unit_number(max_text)
    if max_text and declared is None:
        raise OfdMalformed.at(doc_root, f"MaxUnitID {max_text!r:.40} is not a number")
    units = _Units(declared)
    area = child(common, "PageArea")
    physical = None if area is None else child_text(area, "PhysicalBox")
    page_box = _box(physical, doc_root, "PhysicalBox")

    page_nodes = [] if (pages := child(doc, "Pages")) is None else children(pages, "Page")
    if len(page_nodes) > limits.max_pages:
        raise OfdTooLarge("number of pages", doc_root, len(page_nodes), limits.max_pages)
    for name in ("PublicRes", "DocumentRes"):
        for res in children(common, name):
            reader.resources(resolve(res.text or "", folder, doc_root), doc_root, units)

    page_ids: list[int] = []
    page_files: list[str] = []
    read_pages: list[Page] = []
    for node in page_nodes:
        page_ids.append(units.take(node, doc_root))
        location = resolve(node.get("BaseLoc", ""), folder, doc_root)
        page_files.append(location)
        read_pages.append(reader.page(location, doc_root, units))

    attachments = _attachments(package, doc, doc_root, limits)
    document = Document(
        info=info,
        page_width=page_box.width,
        page_height=page_box.height,
        pages=tuple(read_pages),
        fonts=tuple(reader.fonts.values()),
        images=tuple(reader.images.values()),
        attachments=attachments,
    )
    return OfdContents(
        package=package,
        document=document,
        doc_root=doc_root,
        max_unit_id=units.max,
        page_ids=tuple(page_ids),
        page_files=tuple(page_files),
    )
