"""OFD signature files (GB/T 33190 §18, laid out as GM/T 0099 and ofdrw lay them out).

Layout::

    OFD.xml                              DocBody/Signatures → /Doc_0/Signs/Signatures.xml
    Doc_0/Signs/Signatures.xml           MaxSignId; one Signature ID Type BaseLoc per signature
    Doc_0/Signs/Sign_N/Signature.xml     SignedInfo {Provider, SignatureMethod, SignatureDateTime,
                                         References CheckMethod {Reference FileRef {CheckValue}},
                                         StampAnnot*, Seal/BaseLoc} and SignedValue
    Doc_0/Signs/Sign_N/Seal.esl          the SESeal (DER)
    Doc_0/Signs/Sign_N/SignedValue.dat   the SES_Signature (DER) over the bytes of Signature.xml

This module reads and writes those XML files; it computes no digest and checks no signature
(:mod:`seal.ofd.sign` seals, :mod:`verify.ofd` verifies). Locations are written absolute, from
the package root, as ofdrw writes them; they are read either way (relative ones from the
referring file's folder). Signature IDs and StampAnnot IDs share one counter, ``MaxSignId``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from lxml import etree

from seal.errors import OfdMalformed, OfdTooLarge
from seal.ofd.model import Box, number
from seal.ofd.package import ROOT_FILE, OfdPackage
from seal.ofd.reader import resolve
from seal.ofd.xml import (
    adopt_legacy_namespace,
    child,
    child_text,
    children,
    element,
    parse,
    serialize,
    tag,
)

SIGNS_DIR = "Signs"
SIGNATURE_LIST_FILE = "Signatures.xml"
SIGNATURE_FILE = "Signature.xml"
SIGNED_VALUE_FILE = "SignedValue.dat"
SEAL_FILE = "Seal.esl"
SM3_OID = "1.2.156.10197.1.401"
"""``CheckMethod`` of the references: SM3 (GB/T 32905)."""
MAX_SIGNATURES = 200
"""Signatures read from one document (a licence carries one or two)."""
MAX_STAMP_ANNOTS = 1_000
"""StampAnnots of one signature (a riding seal has one per page)."""


@dataclass(frozen=True)
class Reference:
    """A protected file (package path, no leading slash) and its digest (``CheckValue``)."""

    file: str
    check_value: bytes


@dataclass(frozen=True)
class StampAnnot:
    """Where the seal's picture shows: on the page of unit id ``page_ref``, scaled to
    ``boundary`` (mm on the page), showing only ``clip`` (mm in the boundary) when given."""

    id: int
    page_ref: int
    boundary: Box
    clip: Box | None = None


@dataclass(frozen=True)
class Provider:
    """``Provider``: the software that signed."""

    name: str
    company: str = ""
    version: str = ""


@dataclass(frozen=True)
class SignatureFile:
    """One ``Signature.xml``: what is signed and where the signature value and seal are."""

    provider: Provider
    signature_method: str
    date_time: str
    check_method: str
    references: tuple[Reference, ...]
    stamp_annots: tuple[StampAnnot, ...]
    seal_file: str | None
    signed_value_file: str


@dataclass(frozen=True)
class SignatureEntry:
    """One entry of ``Signatures.xml``: the signature's ID, type (``Seal`` or ``Sign``) and its
    ``Signature.xml`` (package path)."""

    id: int
    type: str
    file: str


@dataclass(frozen=True)
class SignatureList:
    """``Signatures.xml`` at ``path``: the largest ID used and the signatures in order."""

    path: str
    max_sign_id: int
    entries: tuple[SignatureEntry, ...]


def sm3(data: bytes) -> bytes:
    """The SM3 digest (GB/T 32905) of ``data``: a reference's ``CheckValue``."""
    return hashlib.new("sm3", data).digest()


def absolute(path: str) -> str:
    """``path`` as an absolute OFD location (``/Doc_0/…``)."""
    return "/" + path.lstrip("/")


def _folder(path: str) -> str:
    return path.rpartition("/")[0]


def _box(box: Box) -> str:
    return " ".join(number(v) for v in (box.x, box.y, box.width, box.height))


def _read_box(text: str | None, where: str, what: str) -> Box:
    values = (text or "").split()
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(abs(v) < 1e6 for v in numbers):
        raise OfdMalformed.at(where, f"{what} {text!r:.60} is not four numbers")
    return Box(*numbers)


def _positive(text: str | None, where: str, what: str) -> int:
    raw = (text or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) == 0:
        raise OfdMalformed.at(where, f"{what} {raw!r:.40} is not a positive integer")
    return int(raw)


# --- the list ------------------------------------------------------------------------------


def signature_list_location(package: OfdPackage) -> str | None:
    """The package path of ``Signatures.xml`` named by ``OFD.xml`` (first DocBody), or None."""
    root = adopt_legacy_namespace(parse(package.read(ROOT_FILE), ROOT_FILE))
    body = child(root, "DocBody")
    text = None if body is None else child_text(body, "Signatures")
    return resolve(text, "", ROOT_FILE) if text and text.strip() else None


def with_signature_list(ofd_xml: bytes, location: str) -> bytes:
    """``OFD.xml`` naming ``location`` as its signature list (after DocRoot and Versions, where
    GB/T 33190 puts it). Only for a document without signatures: rewriting OFD.xml would break
    a signature protecting it."""
    root = adopt_legacy_namespace(parse(ofd_xml, ROOT_FILE))
    body = child(root, "DocBody")
    if body is None:
        raise OfdMalformed.at(ROOT_FILE, "no DocBody")
    if child(body, "Signatures") is not None:
        raise OfdMalformed.at(ROOT_FILE, "already names a signature list")
    node = etree.Element(tag("Signatures"))
    node.text = absolute(location)
    after = child(body, "Versions")
    if after is None:
        after = child(body, "DocRoot")
    if after is None:
        raise OfdMalformed.at(ROOT_FILE, "no DocRoot")
    after.addnext(node)
    return serialize(root)


def read_signature_list(package: OfdPackage, path: str) -> SignatureList:
    """The signature list at ``path`` (IDs unique, locations inside the package)."""
    root = adopt_legacy_namespace(parse(package.read(path, ROOT_FILE), path))
    if root.tag != tag("Signatures"):
        raise OfdMalformed.at(path, "the root element is not ofd:Signatures")
    nodes = children(root, "Signature")
    if len(nodes) > MAX_SIGNATURES:
        raise OfdTooLarge("number of signatures", path, len(nodes), MAX_SIGNATURES)
    entries: list[SignatureEntry] = []
    seen: set[int] = set()
    for node in nodes:
        sign_id = _positive(node.get("ID"), path, "Signature ID")
        if sign_id in seen:
            raise OfdMalformed.at(path, f"Signature ID {sign_id} is used twice")
        seen.add(sign_id)
        location = resolve(node.get("BaseLoc", ""), _folder(path), path)
        entries.append(SignatureEntry(sign_id, node.get("Type", "Seal"), location))
    max_text = child_text(root, "MaxSignId")
    declared = _positive(max_text, path, "MaxSignId") if max_text else 0
    return SignatureList(path, max(declared, max(seen, default=0)), tuple(entries))


def signature_list_xml(signatures: SignatureList) -> bytes:
    """The bytes of ``Signatures.xml``."""
    root = element("Signatures")
    element("MaxSignId", text=str(signatures.max_sign_id), parent=root)
    for entry in signatures.entries:
        element(
            "Signature",
            {"ID": str(entry.id), "Type": entry.type, "BaseLoc": absolute(entry.file)},
            parent=root,
        )
    return serialize(root)


# --- one signature -------------------------------------------------------------------------


def signature_xml(signature: SignatureFile) -> bytes:
    """The bytes of ``Signature.xml`` (the bytes the SES_Signature's dataHash covers)."""
    root = element("Signature")
    info = element("SignedInfo", parent=root)
    provider = {"ProviderName": signature.provider.name}
    if signature.provider.version:
        provider["Version"] = signature.provider.version
    if signature.provider.company:
        provider["Company"] = signature.provider.company
    element("Provider", provider, parent=info)
    element("SignatureMethod", text=signature.signature_method, parent=info)
    element("SignatureDateTime", text=signature.date_time, parent=info)
    references = element("References", {"CheckMethod": signature.check_method}, parent=info)
    for reference in signature.references:
        node = element("Reference", {"FileRef": absolute(reference.file)}, parent=references)
        element("CheckValue", text=base64.b64encode(reference.check_value).decode(), parent=node)
    for annot in signature.stamp_annots:
        attributes = {
            "ID": str(annot.id),
            "PageRef": str(annot.page_ref),
            "Boundary": _box(annot.boundary),
        }
        if annot.clip is not None:
            attributes["Clip"] = _box(annot.clip)
        element("StampAnnot", attributes, parent=info)
    if signature.seal_file:
        seal = element("Seal", parent=info)
        element("BaseLoc", text=absolute(signature.seal_file), parent=seal)
    element("SignedValue", text=absolute(signature.signed_value_file), parent=root)
    return serialize(root)


def read_signature(package: OfdPackage, path: str, referrer: str) -> SignatureFile:
    """The ``Signature.xml`` at ``path``; every location it names resolved inside the package
    (the files themselves may be missing: a verifier reports that per reference)."""
    root = adopt_legacy_namespace(parse(package.read(path, referrer), path))
    if root.tag != tag("Signature"):
        raise OfdMalformed.at(path, "the root element is not ofd:Signature")
    folder = _folder(path)
    info = child(root, "SignedInfo")
    if info is None:
        raise OfdMalformed.at(path, "no SignedInfo")
    provider_node = child(info, "Provider")
    provider = Provider(
        name="" if provider_node is None else provider_node.get("ProviderName", ""),
        company="" if provider_node is None else provider_node.get("Company", ""),
        version="" if provider_node is None else provider_node.get("Version", ""),
    )
    references_node = child(info, "References")
    if references_node is None:
        raise OfdMalformed.at(path, "no References")
    references: list[Reference] = []
    listed: set[str] = set()
    for node in children(references_node, "Reference"):
        file = resolve(node.get("FileRef", ""), folder, path)
        if file in listed:
            raise OfdMalformed.at(path, f"{file} is referenced twice")
        listed.add(file)
        try:
            value = base64.b64decode(child_text(node, "CheckValue") or "", validate=True)
        except (binascii.Error, ValueError):
            raise OfdMalformed.at(path, f"the CheckValue of {file} is not base64") from None
        references.append(Reference(file, value))
    if not references:
        raise OfdMalformed.at(path, "References lists no file")
    annots: list[StampAnnot] = []
    for node in children(info, "StampAnnot"):
        if len(annots) == MAX_STAMP_ANNOTS:
            raise OfdTooLarge("number of StampAnnots", path, len(annots) + 1, MAX_STAMP_ANNOTS)
        clip = node.get("Clip")
        annots.append(
            StampAnnot(
                id=_positive(node.get("ID"), path, "StampAnnot ID"),
                page_ref=_positive(node.get("PageRef"), path, "StampAnnot PageRef"),
                boundary=_read_box(node.get("Boundary"), path, "StampAnnot Boundary"),
                clip=_read_box(clip, path, "StampAnnot Clip") if clip else None,
            )
        )
    seal = child(info, "Seal")
    seal_text = None if seal is None else child_text(seal, "BaseLoc")
    signed_value = child_text(root, "SignedValue")
    if not signed_value:
        raise OfdMalformed.at(path, "no SignedValue")
    return SignatureFile(
        provider=provider,
        signature_method=(child_text(info, "SignatureMethod") or "").strip(),
        date_time=(child_text(info, "SignatureDateTime") or "").strip(),
        check_method=references_node.get("CheckMethod", "").strip(),
        references=tuple(references),
        stamp_annots=tuple(annots),
        seal_file=resolve(seal_text, folder, path) if seal_text else None,
        signed_value_file=resolve(signed_value, folder, path),
    )
