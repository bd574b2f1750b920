"""OFD XML: the namespace, building elements with lxml, and safe parsing of untrusted XML.

Every OFD file is in the namespace :data:`OFD_NS` with the prefix ``ofd``. Untrusted XML is
parsed by :func:`parse` with a size limit and an lxml parser that resolves no entities, loads no
DTD, touches no network and refuses huge trees; a document type declaration (the carrier of
entity expansion and external entities) is refused outright, before and after parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from seal.errors import OfdMalformed, OfdTooLarge

OFD_NS = "http://www.ofdspec.org/2016"
NSMAP = {"ofd": OFD_NS}
LEGACY_NS = "http://www.ofdspec.org"
"""The namespace of drafts before the 2016 standard, still found in documents."""
MAX_XML_BYTES = 8 * 1024 * 1024
"""Largest XML file parsed (a dense page of text is a few hundred kB)."""

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    dtd_validation=False,
    remove_blank_text=False,
)


def tag(name: str) -> str:
    """The qualified name ``{OFD_NS}name``."""
    found = _TAGS.get(name)
    if found is None:
        found = f"{{{OFD_NS}}}{name}"
        if len(_TAGS) < 1024:  # the names this package writes and looks for, not untrusted ones
            _TAGS[name] = found
    return found


_TAGS: dict[str, str] = {}


def element(
    name: str,
    attributes: Mapping[str, str] | None = None,
    text: str | None = None,
    parent: etree._Element | None = None,
) -> etree._Element:
    """A new ``ofd:name`` element (a child of ``parent`` when given); OfdMalformed when a value
    holds characters XML cannot carry (control characters, lone surrogates)."""
    attrib = attributes if attributes is None or isinstance(attributes, dict) else dict(attributes)
    try:
        node = (
            etree.Element(tag(name), attrib, nsmap=NSMAP)
            if parent is None
            else etree.SubElement(parent, tag(name), attrib)
        )
        if text is not None:
            node.text = text
    except ValueError as error:
        raise OfdMalformed.at(f"ofd:{name}", f"not XML text: {error}") from None
    return node


def serialize(root: etree._Element) -> bytes:
    """The UTF-8 bytes of ``root`` with an XML declaration (the same tree, the same bytes)."""
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def parse(data: bytes, name: str, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """The root of the untrusted XML file ``name``; OfdMalformed or OfdTooLarge naming it."""
    if len(data) > max_bytes:
        raise OfdTooLarge("XML size in bytes", name, len(data), max_bytes)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise OfdMalformed.at(name, "a document type declaration (DTD) is not allowed")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        raise OfdMalformed.at(name, f"not well-formed XML: {error}") from None
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise OfdMalformed.at(name, "a document type declaration (DTD) is not allowed")
    return root


def adopt_legacy_namespace(root: etree._Element) -> etree._Element:
    """``root`` with every element of :data:`LEGACY_NS` moved to :data:`OFD_NS` (in place)."""
    if etree.QName(root).namespace != LEGACY_NS:
        return root
    legacy = f"{{{LEGACY_NS}}}"
    for node in root.iter():
        if isinstance(node.tag, str) and node.tag.startswith(legacy):
            node.tag = tag(node.tag[len(legacy) :])
    return root


def local_name(node: etree._Element) -> str:
    """The element's name without its namespace."""
    return str(etree.QName(node).localname)


def child(node: etree._Element, name: str) -> etree._Element | None:
    """The first ``ofd:name`` child of ``node``, if any."""
    found: etree._Element | None = node.find(tag(name))
    return found


def children(node: etree._Element, name: str) -> list[etree._Element]:
    """Every ``ofd:name`` child of ``node``, in order."""
    return list(node.iterfind(tag(name)))


def child_text(node: etree._Element, name: str) -> str | None:
    """The text of the first ``ofd:name`` child (``""`` when empty), or None when absent."""
    found = child(node, name)
    return None if found is None else (found.text or "")
