# mypy: disable-error-code="no-untyped-call"
"""A fast path for the common seal: one visible PAdES signature appended as an incremental update.

Plain pyHanko spends most of each call in asn1crypto re-serialising the CMS (certificates
included) and in its general-purpose writer. For the shape almost every seal has — a classic
cross-reference table, one new signature field with a pre-built appearance, B-B or B-T — this
module writes the update directly:

* the document is parsed once with pyHanko's reader (page, catalog, AcroForm, trailer);
* the appearance stream is the seal's cached vector drawing;
* the CMS SignedData is assembled as DER from precomputed parts (certificates, issuer and
  serial, ESS signing-certificate-v2), so only the message digest, the signature and the
  time-stamp token are new per seal;
* the signature comes from the key store; the time-stamp from our TSA over the signature value.

The output is what pyHanko would produce (ETSI.CAdES.detached, /ByteRange over the whole file
but /Contents, signed attributes content-type, message-digest and signing-certificate-v2;
signature-time-stamp unsigned attribute at B-T) and is checked by the same validators in the
tests. Anything else — cross-reference streams, encryption, unusual form structures, riding
seals, B-LT — raises :class:`Unsupported` and the caller falls back to pyHanko.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import tsp, x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

from ca.der import der_set, integer, octet_string, oid, seq, tlv
from hsm.keystore import KeyStore, SignatureScheme

CONTENTS_BYTES = 8192  # room for the CMS (certificates, signature, time-stamp token)
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
_OID_TIMESTAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"  # noqa: S105 - an OID
_OID_SHA256 = "2.16.840.1.101.3.4.2.1"
_SIG_OIDS = {
    SignatureScheme.ECDSA_SHA256: ("1.2.840.10045.4.3.2", False),
    SignatureScheme.RSA_PKCS1V15_SHA256: ("1.2.840.113549.1.1.11", True),
}


class Unsupported(Exception):
    """The document or request needs the general (pyHanko) path."""


# --- DER ----------------------------------------------------------------------------------------

# The CA's DER helpers (one of each primitive); ``octets`` is ``octet_string`` here.
octets = octet_string


# --- CMS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CmsTemplate:
    """The parts of a seal's CMS SignedData that do not change between seals."""

    certificates: bytes  # [0] IMPLICIT SET OF Certificate
    sid: bytes  # IssuerAndSerialNumber
    signing_certificate_v2: bytes  # the whole Attribute
    signature_algorithm: bytes  # AlgorithmIdentifier
    scheme: SignatureScheme


@functools.lru_cache(maxsize=256)
def cms_template(
    certificate_der: bytes, chain: tuple[bytes, ...], scheme: SignatureScheme
) -> CmsTemplate:
    """Precompute the constant parts for a seal certificate and its chain."""
    if scheme not in _SIG_OIDS:
        raise Unsupported(f"no fast path for {scheme.value}")
    cert = x509.Certificate.load(certificate_der)
    tbs = cert["tbs_certificate"]
    sid = seq(tbs["issuer"].dump(), integer(cert.serial_number))
    ess_cert_id = seq(
        octets(hashlib.sha256(certificate_der).digest()),
        seq(seq(tlv(0xA4, tbs["issuer"].dump())), integer(cert.serial_number)),
    )
    signing_cert_v2 = seq(oid(_OID_SIGNING_CERT_V2), der_set(seq(seq(ess_cert_id))))
    certs = b"".join(sorted({certificate_der, *chain}))
    algorithm_oid, null_params = _SIG_OIDS[scheme]
    algorithm = seq(oid(algorithm_oid), b"\x05\x00" if null_params else b"")
    return CmsTemplate(tlv(0xA0, certs), sid, signing_cert_v2, algorithm, scheme)


def signed_attributes(template: CmsTemplate, digest: bytes) -> bytes:
    """The DER SET of signed attributes (what the signature covers)."""
    return der_set(
        seq(oid(_OID_CONTENT_TYPE), der_set(oid(_OID_DATA))),
        seq(oid(_OID_MESSAGE_DIGEST), der_set(octets(digest))),
        template.signing_certificate_v2,
    )


def signed_data(
    template: CmsTemplate, attributes: bytes, signature: bytes, timestamp_token: bytes | None
) -> bytes:
    """The DER ContentInfo(SignedData) around a signature."""
    sha256 = seq(oid(_OID_SHA256))
    unsigned = b""
    if timestamp_token is not None:
        unsigned = tlv(0xA1, seq(oid(_OID_TIMESTAMP_TOKEN), der_set(timestamp_token)))
    signer_info = seq(
        integer(1),
        template.sid,
        sha256,
        b"\xa0" + attributes[1:],
        template.signature_algorithm,
        octets(signature),
        unsigned,
    )
    body = seq(
        integer(1),
        der_set(sha256),
        seq(oid(_OID_DATA)),
        template.certificates,
        der_set(signer_info),
    )
    return seq(oid(_OID_SIGNED_DATA), tlv(0xA0, body))


def timestamp_request(signature: bytes) -> tuple[bytes, int]:
    """A DER TimeStampReq over SHA-256(signature) with a nonce; returns (request, nonce)."""
    nonce = int.from_bytes(os.urandom(8), "big")
    imprint = seq(seq(oid(_OID_SHA256)), octets(hashlib.sha256(signature).digest()))
    return seq(integer(1), imprint, integer(nonce), b"\x01\x01\xff"), nonce


def timestamp_token(response_der: bytes, nonce: int, signature: bytes) -> tuple[bytes, datetime]:
    """The token DER and its genTime from a TimeStampResp (checked: granted, nonce, imprint)."""
    found = _granted_token(response_der, nonce, signature)
    if found is not None:
        return found
    response = tsp.TimeStampResp.load(response_der)
    if response["status"]["status"].native not in ("granted", "granted_with_mods"):
        raise Unsupported("the TSA refused the request")
    token = response["time_stamp_token"]
    info = token["content"]["encap_content_info"]["content"].parsed
    if (
        info["nonce"].native != nonce
        or info["message_imprint"]["hashed_message"].native != hashlib.sha256(signature).digest()
    ):
        raise Unsupported("the TSA answered another request")
    return bytes(token.dump()), info["gen_time"].native


def _element(data: bytes, at: int, end: int) -> tuple[int, int, int]:
    """(tag, contents start, contents end) of the DER element at ``at`` (single-byte tag,
    definite length), within ``end``; ValueError or IndexError when it does not fit."""
    tag, size = data[at], data[at + 1]
    at += 2
    if size & 0x80:
        count = size & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported length")
        size = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + size > end:
        raise ValueError("element overruns its container")
    return tag, at, at + size


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        element = _element(data, start, end)
        out.append(element)
        start = element[2]
    return out


_SIGNED_DATA_OID = oid(_OID_SIGNED_DATA)[2:]
_TST_INFO_OID = oid("1.2.840.113549.1.9.16.1.4")[2:]


def _granted_token(
    response_der: bytes, nonce: int, signature: bytes
) -> tuple[bytes, datetime] | None:
    """:func:`timestamp_token`'s answer read straight off the DER, for the shape our TSA (and
    most) answers: a granted status, the nonce and imprint ours, a whole-second UTC genTime.
    ``None`` for anything else, which asn1crypto then reads (and refuses if it must)."""
    data = response_der
    try:
        tag, start, end = _element(data, 0, len(data))
        parts = _children(data, start, end) if tag == 0x30 and end == len(data) else []
        if len(parts) != 2 or parts[0][0] != 0x30 or parts[1][0] != 0x30:
            return None
        status = _children(data, parts[0][1], parts[0][2])
        if (
            not status
            or status[0][0] != 0x02
            or data[status[0][1] : status[0][2]]
            not in (
                b"\x00",
                b"\x01",
            )
        ):
            return None
        token_at = parts[0][2]
        _, token_start, token_end = parts[1]
        content_type, wrapper = _children(data, token_start, token_end)
        if data[content_type[1] : content_type[2]] != _SIGNED_DATA_OID or wrapper[0] != 0xA0:
            return None
        (signed,) = _children(data, wrapper[1], wrapper[2])
        encap = _children(data, signed[1], signed[2])[2]
        e_type, e_wrapper = _children(data, encap[1], encap[2])
        if data[e_type[1] : e_type[2]] != _TST_INFO_OID or e_wrapper[0] != 0xA0:
            return None
        (octets_,) = _children(data, e_wrapper[1], e_wrapper[2])
        if octets_[0] != 0x04:
            return None
        tst_tag, tst_start, tst_end = _element(data, octets_[1], octets_[2])
        fields = _children(data, tst_start, tst_end)
        if tst_tag != 0x30 or tst_end != octets_[2] or fields[2][0] != 0x30:
            return None
        imprint = _children(data, fields[2][1], fields[2][2])
        hashed = imprint[1]
        gen_time = fields[4]
        nonces = [f for f in fields[5:] if f[0] == 0x02]
        text = data[gen_time[1] : gen_time[2]]
        if (
            hashed[0] != 0x04
            or data[hashed[1] : hashed[2]] != hashlib.sha256(signature).digest()
            or len(nonces) != 1
            or int.from_bytes(data[nonces[0][1] : nonces[0][2]], "big", signed=True) != nonce
            or gen_time[0] != 0x18
            or len(text) != 15
            or not text[:14].isdigit()
            or text[14:] != b"Z"
        ):
            return None
        moment = datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]),
            int(text[8:10]), int(text[10:12]), int(text[12:14]), tzinfo=UTC,
        )  # fmt: skip
    except (ValueError, IndexError):
        return None
    return data[token_at:token_end], moment


# --- PDF ----------------------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    if text.isascii():
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return f"({escaped})".encode("latin-1")
    return b"<feff" + text.encode("utf-16-be").hex().encode() + b">"


def _serialise(obj: generic.PdfObject) -> bytes:
    out = io.BytesIO()
    obj.write_to_stream(out, None)
    return out.getvalue()


def _pdf_date(moment: datetime) -> bytes:
    return moment.astimezone(UTC).strftime("(D:%Y%m%d%H%M%S+00'00')").encode()


@dataclass(frozen=True)
class Visible:
    """A visible seal: page index, rectangle in user space, appearance stream and its size."""

    page: int
    rect: tuple[float, float, float, float]
    appearance: bytes
    width: float
    height: float


Box = tuple[float, float, float, float]
Placer = Callable[[int, Callable[[int], Box]], Visible]
"""Given the page count and a page-box look-up, where the seal goes."""


@dataclass(frozen=True)
class Outline:
    """What the writer of a fresh one-page PDF knows of it — a classic cross-reference table, no
    form, no annotations, no encryption — so that :func:`seal` appends to it without parsing it
    (pyHanko's reader took ~0.4 ms of a ~1.2 ms seal): the next free object number, where the
    cross-reference table starts, the catalog and the page (object number and dictionary
    source, ``<<…>>``), the page's media box, the ``/Info`` reference and the first ``/ID``
    string (PDF source; empty when absent). The caller vouches for it."""

    size: int
    startxref: int
    catalog: tuple[int, bytes]
    page: tuple[int, bytes]
    media_box: tuple[float, float, float, float]
    info: bytes = b""
    file_id: bytes = b""


@dataclass(frozen=True)
class FastRequest:
    """One seal to apply by the fast path."""

    pdf: bytes
    field_name: str
    place: Placer
    reason: str
    location: str
    keystore: KeyStore
    key_id: str
    template: CmsTemplate
    timestamp: Callable[[bytes], bytes] | None  # TimeStampReq DER -> TimeStampResp DER
    outline: Outline | None = None  # the writer's knowledge of ``pdf``: no parse


@dataclass
class _Update:
    """The objects an incremental update replaces or adds before the signature's own, and what
    its trailer carries over (PDF source)."""

    prev: int
    size: int
    next_num: int
    objects: dict[tuple[int, int], bytes]
    page: tuple[int, int]
    visible: Visible
    root: bytes
    info: bytes
    file_id: bytes


def _startxref(pdf: bytes) -> int:
    tail = pdf[-1024:]
    at = tail.rfind(b"startxref")
    if at < 0:
        raise Unsupported("no startxref")
    try:
        return int(tail[at + 9 :].split()[0])
    except (ValueError, IndexError):
        raise Unsupported("bad startxref") from None


def _parsed(request: FastRequest) -> _Update:
    """The update's objects found by parsing the document (pyHanko's reader)."""
    pdf = request.pdf
    prev = _startxref(pdf)
    if pdf[prev : prev + 4] != b"xref":
        raise Unsupported("cross-reference stream")
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    except Exception as exc:  # noqa: BLE001 - the general path reports parse errors properly
        raise Unsupported(f"parse: {exc}") from None
    trailer = reader.trailer
    if "/Encrypt" in trailer or "/XRefStm" in trailer:
        raise Unsupported("encrypted or hybrid file")
    size = int(trailer["/Size"])
    root_ref = trailer.raw_get("/Root")
    if not isinstance(root_ref, generic.IndirectObject):
        raise Unsupported("direct catalog")
    catalog = root_ref.get_object()
    pages: dict[int, generic.IndirectObject] = {}

    def box_of(index: int) -> Box:
        pages[index] = reader.find_page_for_modification(index)[0]
        node = pages[index].get_object()
        while node is not None:
            if "/MediaBox" in node:
                x0, y0, x1, y1 = (float(v) for v in node["/MediaBox"])
                return x0, y0, x1, y1
            parent = node.get("/Parent")
            node = parent.get_object() if parent is not None else None
        return 0.0, 0.0, 595.0, 842.0

    visible = request.place(int(catalog["/Pages"]["/Count"]), box_of)
    page_ref = pages.get(visible.page) or reader.find_page_for_modification(visible.page)[0]
    page = page_ref.get_object()

    field_num = size + 1
    next_num = size + 3
    objects: dict[tuple[int, int], bytes] = {}
    field_ref = generic.IndirectObject(field_num, 0, reader)

    # the page's /Annots gains the widget
    annots = page.raw_get("/Annots") if "/Annots" in page else None
    if isinstance(annots, generic.IndirectObject):
        array = generic.ArrayObject([*list(annots.get_object()), field_ref])
        objects[(annots.idnum, annots.generation)] = _serialise(array)
    else:
        new_page = generic.DictionaryObject(dict(page))
        new_page[generic.NameObject("/Annots")] = generic.ArrayObject(
            [*list(annots or []), field_ref]
        )
        objects[(page_ref.idnum, page_ref.generation)] = _serialise(new_page)

    # the AcroForm gains the field (created when missing)
    form = catalog.raw_get("/AcroForm") if "/AcroForm" in catalog else None
    if isinstance(form, generic.IndirectObject):
        form_dict = form.get_object()
        if "/Fields" in form_dict and isinstance(
            form_dict.raw_get("/Fields"), generic.IndirectObject
        ):
            raise Unsupported("indirect /Fields")
        new_form = generic.DictionaryObject(dict(form_dict))
        new_form[generic.NameObject("/Fields")] = generic.ArrayObject(
            [*list(form_dict.get("/Fields", [])), field_ref]
        )
        new_form[generic.NameObject("/SigFlags")] = generic.NumberObject(3)
        objects[(form.idnum, form.generation)] = _serialise(new_form)
    else:
        new_form = generic.DictionaryObject(dict(form or {}))
        if "/Fields" in new_form and isinstance(
            new_form.raw_get("/Fields"), generic.IndirectObject
        ):
            raise Unsupported("indirect /Fields")
        new_form[generic.NameObject("/Fields")] = generic.ArrayObject(
            [*list(new_form.get("/Fields", [])), field_ref]
        )
        new_form[generic.NameObject("/SigFlags")] = generic.NumberObject(3)
        form_num = next_num
        next_num += 1
        objects[(form_num, 0)] = _serialise(new_form)
        new_catalog = generic.DictionaryObject(dict(catalog))
        new_catalog[generic.NameObject("/AcroForm")] = generic.IndirectObject(form_num, 0, reader)
        objects[(root_ref.idnum, root_ref.generation)] = _serialise(new_catalog)

    return _Update(
        prev=prev,
        size=size,
        next_num=next_num,
        objects=objects,
        page=(page_ref.idnum, page_ref.generation),
        visible=visible,
        root=_serialise(root_ref),
        info=_serialise(trailer.raw_get("/Info")) if "/Info" in trailer else b"",
        file_id=_serialise(trailer["/ID"][0]) if "/ID" in trailer else b"",
    )


def _outlined(request: FastRequest) -> _Update:
    """The update's objects from the writer's :class:`Outline` (nothing parsed)."""
    outline = request.outline
    assert outline is not None
    pdf = request.pdf
    at = outline.startxref
    catalog_num, catalog = outline.catalog
    page_num, page = outline.page
    if pdf[at : at + 4] != b"xref" or not catalog.endswith(b">>") or not page.endswith(b">>"):
        raise Unsupported("the outline does not fit the document")
    visible = request.place(1, lambda _index: outline.media_box)
    size = outline.size
    field_num, form_num = size + 1, size + 3
    objects = {
        (page_num, 0): page[:-2] + b"/Annots[%d 0 R]>>" % field_num,
        (form_num, 0): b"<</Fields[%d 0 R]/SigFlags 3>>" % field_num,
        (catalog_num, 0): catalog[:-2] + b"/AcroForm %d 0 R>>" % form_num,
    }
    return _Update(
        prev=at,
        size=size,
        next_num=size + 4,
        objects=objects,
        page=(page_num, 0),
        visible=visible,
        root=b"%d 0 R" % catalog_num,
        info=outline.info,
        file_id=outline.file_id,
    )


def seal(request: FastRequest) -> tuple[bytes, datetime]:
    """Append one visible PAdES signature; returns (sealed PDF, signing time)."""
    pdf = request.pdf
    update = _outlined(request) if request.outline is not None else _parsed(request)
    prev, size, next_num, objects = update.prev, update.size, update.next_num, update.objects
    visible = update.visible
    sig_num, field_num, ap_num = size, size + 1, size + 2

    now = datetime.now(UTC)
    x0, y0, x1, y1 = visible.rect
    objects[(field_num, 0)] = (
        b"<</Type/Annot/Subtype/Widget/FT/Sig/F 132/T "
        + _pdf_string(request.field_name)
        + b"/V %d 0 R/P %d %d R" % (sig_num, *update.page)
        + b"/Rect[%.2f %.2f %.2f %.2f]" % (x0, y0, x1, y1)
        + b"/AP<</N %d 0 R>>>>" % ap_num
    )
    objects[(ap_num, 0)] = (
        b"<</Type/XObject/Subtype/Form/BBox[0 0 %.3f %.3f]/Resources<<>>/Length %d>>\nstream\n"
        % (visible.width, visible.height, len(visible.appearance))
        + visible.appearance
        + b"\nendstream"
    )
    placeholder = b"0" * (2 * CONTENTS_BYTES)
    byte_range_slot = b"/ByteRange[0 0000000000 0000000000 0000000000]"
    sig_dict = (
        b"<</Type/Sig/Filter/Adobe.PPKLite/SubFilter/ETSI.CAdES.detached"
        + byte_range_slot
        + b"/Contents<"
        + placeholder
        + b">/M"
        + _pdf_date(now)
        + (b"/Reason" + _pdf_string(request.reason) if request.reason else b"")
        + (b"/Location" + _pdf_string(request.location) if request.location else b"")
        + b">>"
    )
    objects[(sig_num, 0)] = sig_dict

    out = bytearray(pdf)
    if not out.endswith(b"\n"):
        out += b"\n"
    offsets: dict[tuple[int, int], int] = {}
    sig_offset = 0
    for key in sorted(objects):
        offsets[key] = len(out)
        if key == (sig_num, 0):
            sig_offset = len(out)
        out += b"%d %d obj\n" % key + objects[key] + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n"
    keys = sorted(offsets)
    start = 0
    while start < len(keys):
        end = start
        while end + 1 < len(keys) and keys[end + 1][0] == keys[end][0] + 1:
            end += 1
        out += b"%d %d\n" % (keys[start][0], end - start + 1)
        for key in keys[start : end + 1]:
            out += b"%010d %05d n\r\n" % (offsets[key], key[1])
        start = end + 1
    new_trailer = b"<</Size %d/Root %s/Prev %d" % (max(size, next_num), update.root, prev)
    if update.info:
        new_trailer += b"/Info " + update.info
    if update.file_id:
        new_trailer += b"/ID[" + update.file_id + b"<" + os.urandom(16).hex().encode() + b">]"
    out += b"trailer\n" + new_trailer + b">>\nstartxref\n%d\n%%%%EOF\n" % xref_at

    # byte range: everything but the hex string of /Contents (delimiters included)
    contents_start = out.index(b"/Contents<", sig_offset) + len(b"/Contents")
    contents_end = contents_start + 2 + len(placeholder)
    byte_range = b"/ByteRange[0 %010d %010d %010d]" % (
        contents_start,
        contents_end,
        len(out) - contents_end,
    )
    slot = out.index(byte_range_slot, sig_offset)
    out[slot : slot + len(byte_range_slot)] = byte_range
    digest = hashlib.sha256()
    digest.update(memoryview(out)[:contents_start])
    digest.update(memoryview(out)[contents_end:])

    attributes = signed_attributes(request.template, digest.digest())
    signature = request.keystore.sign(request.key_id, attributes, request.template.scheme)
    token = None
    signing_time = now
    if request.timestamp is not None:
        tsq, nonce = timestamp_request(signature)
        token, signing_time = timestamp_token(request.timestamp(tsq), nonce, signature)
    cms = signed_data(request.template, attributes, signature, token)
    if len(cms) > CONTENTS_BYTES:
        raise Unsupported("signature larger than the reserved space")
    out[contents_start + 1 : contents_start + 1 + 2 * len(cms)] = cms.hex().encode()
    return bytes(out), signing_time
