"""Adds one GB/T 38540 electronic seal signature to an OFD package (GM/T 0099's layout, see
:mod:`seal.ofd.signatures`), as an explicit sequence:

1. Find the signature list (``OFD.xml`` → ``Signatures``) or, for a first signature, name a new
   one ``<Doc>/Signs/Signatures.xml`` in ``OFD.xml``. A document whose earlier signature
   protects the list itself was sealed "no further signatures": refused.
2. Take the next ID (``MaxSignId`` + 1) for the signature and the following ones for its
   StampAnnots; the signature's folder is the first free ``Sign_N``.
3. Write ``Seal.esl`` (the SESeal) and the updated list.
4. List every file of the package but the signature list with its SM3 digest (``References``
   ``CheckMethod`` SM3): the document, its resources, ``OFD.xml``, this seal and every earlier
   signature's files. The list is left out so that a later seal can be added without breaking
   this one ("continue signing" in ofdrw's terms); everything else changed, added under a name
   listed, or removed after sealing breaks it.
5. Write ``Signature.xml`` and have ``sign`` make ``SignedValue.dat`` over its exact bytes with
   the property info being its absolute location.

The caller supplies the signing (the key store, the time-stamp, the audit record live in
:mod:`seal.ofd_seal`); this module touches only the package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seal.errors import InvalidSealRequest
from seal.ofd.package import ROOT_FILE, OfdPackage, RepeatCache
from seal.ofd.reader import OfdContents
from seal.ofd.signatures import (
    SEAL_FILE,
    SIGNATURE_FILE,
    SIGNATURE_LIST_FILE,
    SIGNED_VALUE_FILE,
    SIGNS_DIR,
    SM3_OID,
    Provider,
    Reference,
    SignatureEntry,
    SignatureFile,
    SignatureList,
    StampAnnot,
    absolute,
    read_signature,
    read_signature_list,
    signature_list_location,
    signature_list_xml,
    signature_xml,
    sm3,
    with_signature_list,
)

_DIGESTS = RepeatCache()
"""SM3 digests of files met again (the seal's ``Seal.esl``, attachments every licence carries)."""
_REPEATED_MIN = 2048


def _check_value(data: bytes) -> bytes:
    """``sm3(data)``; a large file's digest remembered when the same bytes come again."""
    return _DIGESTS.get(data, sm3) if len(data) >= _REPEATED_MIN else sm3(data)


SignedValueMaker = Callable[[bytes, str], bytes]
"""(the bytes of Signature.xml, its absolute location) → the DER SES_Signature."""


@dataclass(frozen=True)
class OfdSignature:
    """What one seal adds: the SESeal, the signature method OID, when (``SignatureDateTime``),
    who signs (``Provider``), the stamps (made from the first free ID) and the signer."""

    seal_der: bytes
    signature_method: str
    date_time: str
    provider: Provider
    stamps: Callable[[int], tuple[StampAnnot, ...]]
    sign: SignedValueMaker


@dataclass(frozen=True)
class SignedOfd:
    """The sealed package, the new signature's ID and the location of its Signature.xml."""

    package: OfdPackage
    sign_id: int
    signature_file: str


def _signature_list(contents: OfdContents) -> tuple[SignatureList, dict[str, bytes]]:
    """The current list (empty for a first signature) and the files to replace."""
    package = contents.package
    location = signature_list_location(package)
    if location is None:
        folder = contents.doc_root.rpartition("/")[0]
        location = f"{folder}/{SIGNS_DIR}/{SIGNATURE_LIST_FILE}".lstrip("/")
        if location in package:
            raise InvalidSealRequest.field("ofd", f"{location} exists but OFD.xml does not name it")
        ofd_xml = with_signature_list(package.read(ROOT_FILE), location)
        return SignatureList(location, 0, ()), {ROOT_FILE: ofd_xml}
    current = read_signature_list(package, location)
    for entry in current.entries:
        earlier = read_signature(package, entry.file, location)
        if any(reference.file == location for reference in earlier.references):
            raise InvalidSealRequest.field(
                "ofd",
                f"signature {entry.id} protects the signature list: the document was sealed "
                "to take no further signature",
            )
    return current, {}


def add_signature(contents: OfdContents, signature: OfdSignature) -> SignedOfd:
    """``contents.package`` with one more seal signature (see the module docstring)."""
    package = contents.package
    current, files = _signature_list(contents)
    sign_id = current.max_sign_id + 1
    stamps = signature.stamps(sign_id + 1)
    max_sign_id = max([sign_id, *(stamp.id for stamp in stamps)])

    signs_folder = current.path.rpartition("/")[0]
    number = len(current.entries)
    while any(name.startswith(f"{signs_folder}/Sign_{number}/") for name in package):
        number += 1
    folder = f"{signs_folder}/Sign_{number}"
    signature_file = f"{folder}/{SIGNATURE_FILE}"
    seal_file = f"{folder}/{SEAL_FILE}"
    signed_value_file = f"{folder}/{SIGNED_VALUE_FILE}"

    entries = (*current.entries, SignatureEntry(sign_id, "Seal", signature_file))
    merged = dict(package.files)
    merged.update(files)
    merged[current.path] = signature_list_xml(SignatureList(current.path, max_sign_id, entries))
    merged[seal_file] = signature.seal_der

    references = tuple(
        Reference(name, _check_value(merged[name]))
        for name in sorted(merged)
        if name != current.path
    )
    xml = signature_xml(
        SignatureFile(
            provider=signature.provider,
            signature_method=signature.signature_method,
            date_time=signature.date_time,
            check_method=SM3_OID,
            references=references,
            stamp_annots=stamps,
            seal_file=seal_file,
            signed_value_file=signed_value_file,
        )
    )
    merged[signature_file] = xml
    merged[signed_value_file] = signature.sign(xml, absolute(signature_file))
    return SignedOfd(OfdPackage(merged), sign_id, signature_file)
