"""Reading a licence PDF back: the embedded licence data as sealed, the /DSS certificates.

Nothing here verifies: :func:`license.document_check.check_pdf` checks the seal, the
time-stamp and the signed data. Every broken or foreign file is
:class:`LicenceVerificationFailed` (MALFORMED); a file over the document limits is
:class:`govtrust.errors.ResourceExhausted` (:mod:`govtrust.pdf_guard`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from govtrust.errors import ResourceExhausted
from govtrust.pdf_guard import check_structure, reading_limits
from license.errors import LicenceVerificationFailed, Reason
from license.pdf_writer import JWS_FILE, QR_FILE

MAX_EMBEDDED_BYTES = 256 * 1024


@dataclass(frozen=True)
class EmbeddedLicence:
    """The licence artefacts embedded in a licence PDF."""

    signed_data: str
    qr_payload: str


def _malformed(why: str) -> LicenceVerificationFailed:
    return LicenceVerificationFailed(Reason.MALFORMED, why)


def embedded_from_root(root: Any) -> EmbeddedLicence:
    """The embedded licence artefacts under a document catalog (pyHanko objects)."""
    try:
        tree = root["/Names"]["/EmbeddedFiles"]
    except (KeyError, TypeError):
        raise _malformed("not a licence document: no embedded licence data") from None
    found: dict[str, str] = {}

    def walk(node: Any, depth: int) -> None:
        if depth > 8:
            raise _malformed("embedded file tree too deep")
        names = node.get("/Names")
        if names is not None:
            for i in range(0, len(names) - 1, 2):
                key = str(names[i])
                if key in (JWS_FILE, QR_FILE) and key not in found:
                    stream = names[i + 1].get_object()["/EF"]["/F"].get_object()
                    data = stream.data
                    if len(data) > MAX_EMBEDDED_BYTES:
                        raise _malformed(f"embedded {key} too large")
                    found[key] = data.decode("ascii").strip()
        for kid in node.get("/Kids", []):
            walk(kid.get_object(), depth + 1)

    try:
        walk(tree.get_object(), 0)
    except LicenceVerificationFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any broken structure is a malformed document
        raise _malformed(f"embedded licence data unreadable: {exc}") from None
    if JWS_FILE not in found:
        raise _malformed(f"not a licence document: no {JWS_FILE}")
    return EmbeddedLicence(found[JWS_FILE], found.get(QR_FILE, ""))


def open_pdf(pdf: bytes) -> Any:
    """pyHanko's reader over ``pdf``; MALFORMED when it is not a readable PDF, DocumentTooComplex
    over the document limits in force (:func:`govtrust.pdf_guard.reading_limits`)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    if not isinstance(pdf, bytes | bytearray) or b"%PDF-" not in bytes(pdf[:1024]):
        raise _malformed("not a PDF document")
    try:
        with reading_limits() as limits:
            reader = PdfFileReader(io.BytesIO(bytes(pdf)), strict=False)
        check_structure(reader, limits)  # before anything walks the revisions
        reader.root  # noqa: B018 - forces the catalog to resolve
    except ResourceExhausted:
        raise  # over a document limit or the request's budget (govtrust.pdf_guard): not MALFORMED
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many types on broken files
        raise _malformed(f"the PDF cannot be read: {exc}") from None
    return reader


def dss_certificates(root: Any, limit: int = 32) -> list[bytes]:
    """DER certificates in a catalog's /DSS /Certs (validation material, not trusted)."""
    try:
        streams = root["/DSS"]["/Certs"]
        return [s.get_object().data for s in list(streams)[:limit]]
    except Exception:  # noqa: BLE001 - absent or broken: no extra certificates
        return []


def sealed_root(reader: Any) -> Any:
    """The catalog as the document's first seal covers it (the current one when unsealed or
    when the signatures cannot be read): what a later incremental update cannot swap."""
    try:
        signatures = list(reader.embedded_regular_signatures)
        if signatures:
            first = min(signatures, key=lambda s: s.signed_revision)
            return reader.get_historical_root(first.signed_revision)
    except Exception:  # noqa: BLE001, S110 - unreadable signatures: check_pdf reports them
        pass
    return reader.root


def read_licence_pdf(pdf: bytes) -> EmbeddedLicence:
    """The signed data and QR payload embedded in a licence PDF, as sealed: from the revision
    the first seal covers, so an update appended after sealing cannot substitute another
    licence (not verified here: see :func:`license.document_check.check_pdf`).
    Raises :class:`LicenceVerificationFailed` (MALFORMED) on anything else."""
    reader = open_pdf(pdf)
    try:
        return embedded_from_root(sealed_root(reader))
    except LicenceVerificationFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many types on broken files
        raise _malformed(f"the PDF cannot be read: {exc}") from None
