"""Checking a licence OFD on its own: the department seal's GB/T 38540 signature, then the
attached signed data — the OFD counterpart of :mod:`license.document_check`.

:func:`check_ofd_reading` answers with the same :class:`~license.checking.LicenceCheck` report
as the other paths and never raises on bad input. In order:

1. the package reads safely (:func:`seal.ofd.package.read_package` within its limits) and its
   document carries the licence as an attachment (``licence.jws``) — else ``MALFORMED``;
2. it has a signature — else ``OFD_UNSEALED``;
3. the first signature (lowest signature ID) is checked by :func:`seal.ofd.validation.
   check_package`: every file it protects unchanged, none removed, none added but later
   signatures' own files (``OFD_MODIFIED``, naming the files); Signature.xml is what its
   SES_Signature signed, the signer's and the seal maker's signatures verify, the signature is
   of type ``Seal`` (``OFD_SIGNATURE_INVALID``). Later seals are allowed when they leave it
   intact;
4. the signed data is read from the attachment and checked by
   :func:`license.checking.check_signed_data`'s steps (signature, issuer, status list, validity
   window); when it does not verify, a file changed after sealing is what is reported
   (``OFD_MODIFIED``), else the signed data's own reason;
5. the signer's certificate chains to ``roots`` (``OFD_UNTRUSTED``), through the CA
   certificates the OFD carries (``licence-ca.pem``), the signed data's chain and the
   time-stamp's certificates;
6. its ``timeStamp`` is an RFC 3161 token over the signature value (:func:`ca.cms_check.
   check_token`: imprint, content digest, the TSA's signature; SM3 under an SM2 TSA) by a
   certificate with the timeStamping EKU that chains to ``roots`` at genTime, and genTime lies
   within the signer certificate's validity (``OFD_TIMESTAMP_INVALID``);
7. the seal is the issuing department's official seal (``OFD_SIGNER_MISMATCH``): the signed
   data is signed by the seal's P-256 key and the OFD by its SM2 key (the same key for an ECDSA
   seal), so the check compares what both certificates name — the department
   (organizationIdentifier ``NTRCN-<USCC>`` = the licence's ZZBFJGDM) — and requires the
   SESeal's type to be the official seal (法定名称章, type 1);
8. the attached QR payload, when present, must verify and describe the same licence
   (``QR_MISMATCH``).

Untrusted input is bounded: at most :data:`MAX_OFD_BYTES`, then the package limits (entries,
inflated size, compression ratio: a zip bomb); past one, or when the request's budget is spent
or cancelled, :func:`check_ofd_reading` *raises* a ``ResourceExhausted`` as the PDF check does.

As on the PDF path, revocation of the seal certificate is not looked up (the licence's state
comes from the issuer's signed status list) and the chain is checked at the earlier of now and
the seal certificate's expiry, with the time-stamp required inside the certificate's validity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca.cms_check import TokenCheck, TokenUnreadable, check_token
from govtrust.budget import checkpoint
from govtrust.errors import ResourceExhausted
from license.chain import chain_from, verify_chain
from license.checking import LicenceCheck, check_verified, failed_check
from license.document_check import MALFORMED, MAX_PDF_BYTES, QR_MISMATCH, invalid
from license.errors import LicenceVerificationFailed
from license.ofd_writer import CA_FILE
from license.pdf_reader import MAX_EMBEDDED_BYTES, EmbeddedLicence
from license.pdf_writer import JWS_FILE, QR_FILE
from license.qr import TrustList, decode_payload
from license.signed_data import VerifiedLicence, signer_uscc, verify_licence
from license.status_list import VerifiedStatusList
from seal import structures
from seal.errors import OfdMalformed, SealStructureError
from seal.ofd.package import read_package
from seal.ofd.reader import read_document
from seal.ofd.validation import FindingKind, SignatureCheck, check_package
from seal.types import SealKind

OFD_UNSEALED = "OFD_UNSEALED"
OFD_SIGNATURE_INVALID = "OFD_SIGNATURE_INVALID"
OFD_UNTRUSTED = "OFD_UNTRUSTED"
OFD_TIMESTAMP_INVALID = "OFD_TIMESTAMP_INVALID"
OFD_MODIFIED = "OFD_MODIFIED"
OFD_SIGNER_MISMATCH = "OFD_SIGNER_MISMATCH"
MAX_OFD_BYTES = MAX_PDF_BYTES
ZIP_MAGIC = b"PK\x03\x04"
MAX_CA_CERTIFICATES = 64


def is_ofd(data: bytes) -> bool:
    """Whether ``data`` starts like an OFD (a zip package) rather than a PDF."""
    return data[:4] == ZIP_MAGIC


@dataclass(frozen=True)
class CheckedOfd:
    """A licence OFD's check and the licence it carries (``embedded`` is None when the file
    holds no readable licence: then ``check`` says MALFORMED and why)."""

    check: LicenceCheck
    embedded: EmbeddedLicence | None


@dataclass(frozen=True)
class _Read:
    embedded: EmbeddedLicence
    certificates: tuple[x509.Certificate, ...]


def check_ofd_reading(
    data: bytes,
    roots: Sequence[x509.Certificate],
    status_lists: Mapping[str, VerifiedStatusList],
    *,
    today: date | None = None,
) -> CheckedOfd:
    """Check a sealed licence OFD (see the module docstring), also giving back the licence it
    carries. Bad input is reported; only a package past its limits (``OfdTooLarge``) or a
    spent or cancelled budget raises (``ResourceExhausted``)."""
    read: list[EmbeddedLicence] = []
    try:
        check = _check(data, roots, status_lists, today, read)
    except ResourceExhausted:
        raise
    except LicenceVerificationFailed as exc:
        check = invalid(exc.reason.value, exc.message)
    except Exception as exc:  # noqa: BLE001 - a checker reports, it does not crash
        check = invalid(MALFORMED, f"the document cannot be checked: {exc}")
    return CheckedOfd(check, read[0] if read else None)


def _text(data: bytes, name: str) -> str:
    if len(data) > MAX_EMBEDDED_BYTES:
        raise OfdMalformed.at(name, "attachment too large")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise OfdMalformed.at(name, "not ASCII text") from None


def _certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """The CA certificates attached (unreadable ones ignored: each is checked up to a root)."""
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        return ()
    return tuple(found[:MAX_CA_CERTIFICATES])


def _attached(attachments: Sequence[tuple[str, bytes]]) -> _Read:
    files = dict(attachments)
    if JWS_FILE not in files:
        raise OfdMalformed.at("package", f"the OFD carries no licence (no {JWS_FILE} attachment)")
    signed_data = _text(files[JWS_FILE], JWS_FILE)
    if not signed_data:
        raise OfdMalformed.at(JWS_FILE, "empty")
    qr = _text(files[QR_FILE], QR_FILE) if QR_FILE in files else ""
    certs = _certificates(files[CA_FILE]) if CA_FILE in files else ()
    return _Read(EmbeddedLicence(signed_data, qr), certs)


def _check(
    data: bytes,
    roots: Sequence[x509.Certificate],
    status_lists: Mapping[str, VerifiedStatusList],
    today: date | None,
    read: list[EmbeddedLicence],
) -> LicenceCheck:
    if len(data) > MAX_OFD_BYTES:
        return invalid(MALFORMED, f"a licence document is at most {MAX_OFD_BYTES} bytes")
    package = read_package(data)  # OfdMalformed: MALFORMED; OfdTooLarge raises
    checkpoint()
    contents = read_document(package)
    attached = _attached([(a.name, a.data) for a in contents.document.attachments])
    read.append(attached.embedded)
    checkpoint()
    result = check_package(package)
    if not result.signed:
        return invalid(OFD_UNSEALED, "the licence document carries no seal")
    first = min(result.signatures, key=lambda s: s.sign_id)
    try:
        verified = verify_licence(attached.embedded.signed_data, roots)
    except LicenceVerificationFailed as exc:
        if first.changed or first.added or first.removed:
            return invalid(OFD_MODIFIED, _modified(first))  # e.g. an attachment replaced
        return failed_check(exc)  # the signed data itself is bad: that report says why
    report = check_verified(verified, status_lists, today=today)
    checkpoint()
    problem = _seal_problem(first, roots, verified, attached.certificates)
    if problem is not None:
        return invalid(*problem, base=report)
    qr = attached.embedded.qr_payload
    if qr:
        trust = TrustList(roots)
        trust.add(verified.chain)
        try:
            decoded = decode_payload(qr, trust)
        except LicenceVerificationFailed as exc:
            return invalid(QR_MISMATCH, f"the attached QR payload does not verify: {exc}", report)
        if not decoded.matches(verified.metadata):
            return invalid(QR_MISMATCH, "the attached QR payload is of another licence", report)
    return report


def _modified(check: SignatureCheck) -> str:
    parts = [
        *(f"{name} changed" for name in check.changed),
        *(f"{name} added" for name in check.added),
        *(f"{name} removed" for name in check.removed),
    ]
    shown = "; ".join(parts[:5]) + ("; …" if len(parts) > 5 else "")
    return f"the document was changed after sealing: {shown}"


def _seal_problem(
    first: SignatureCheck,
    roots: Sequence[x509.Certificate],
    verified: VerifiedLicence,
    carried: Sequence[x509.Certificate],
) -> tuple[str, str] | None:
    """The first signature judged as the licence's seal; (reason, message) when it fails."""
    if first.changed or first.added or first.removed:
        return OFD_MODIFIED, _modified(first)
    if not first.intact:
        integrity = [f.message for f in first.findings if f.kind is FindingKind.INTEGRITY]
        why = integrity[0] if integrity else "its protected files cannot be checked"
        return OFD_SIGNATURE_INVALID, f"the seal signature does not verify: {why}"
    if first.findings or not first.signature_valid:
        why = first.findings[0].message if first.findings else "the signature value"
        return OFD_SIGNATURE_INVALID, f"the seal signature does not verify: {why}"
    if first.type != "Seal":
        return OFD_SIGNATURE_INVALID, f"the first signature is of type {first.type!r:.20}, not Seal"
    try:
        signer = x509.load_der_x509_certificate(first.signer_certificate or b"")
    except ValueError:
        return OFD_SIGNATURE_INVALID, "the seal signer's certificate does not parse"
    candidates = [*carried, *verified.chain[1:]]
    token_check: TokenCheck | None = None
    if first.time_stamp_token:
        try:
            token_check = check_token(first.time_stamp_token, first.signature_value)
            candidates += token_check.certificates
        except TokenUnreadable:
            token_check = None
    moment = min(datetime.now(UTC), signer.not_valid_after_utc - timedelta(seconds=1))
    try:
        verify_chain(chain_from(signer, candidates), roots, at=moment)
    except LicenceVerificationFailed as exc:
        return OFD_UNTRUSTED, f"the seal certificate does not chain to a trusted root: {exc}"
    stamp = _timestamp_problem(first, token_check, signer, roots, candidates)
    if stamp:
        return OFD_TIMESTAMP_INVALID, stamp
    return _signer_problem(first, signer, verified)


def _timestamp_problem(
    first: SignatureCheck,
    token: TokenCheck | None,
    signer: x509.Certificate,
    roots: Sequence[x509.Certificate],
    candidates: Sequence[x509.Certificate],
) -> str:
    """Why the seal's time-stamp is not trusted ("" when it is)."""
    if not first.time_stamp_token:
        return "the seal signature carries no time-stamp"
    if token is None:
        return "the seal's time-stamp token does not parse"
    if not token.imprint_matches:
        return "the time-stamp is not over the seal's signature value"
    if not token.verifies:
        return f"the time-stamp's signature does not verify ({token.signer.problem or 'mismatch'})"
    tsa = token.tsa_certificate
    if tsa is None:
        return "the time-stamp's signer certificate is not in the token"
    try:
        eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        stamping = eku.critical and ExtendedKeyUsageOID.TIME_STAMPING in eku.value
    except (x509.ExtensionNotFound, ValueError):
        stamping = False
    if not stamping:
        return "the time-stamp is not signed by a time-stamping certificate (critical EKU)"
    try:
        verify_chain(chain_from(tsa, candidates), roots, at=token.gen_time)
    except LicenceVerificationFailed as exc:
        return f"the time-stamping certificate does not chain to a trusted root: {exc}"
    if not signer.not_valid_before_utc <= token.gen_time <= signer.not_valid_after_utc:
        return "sealed outside the seal certificate's validity"
    return ""


def _signer_problem(
    first: SignatureCheck, signer: x509.Certificate, verified: VerifiedLicence
) -> tuple[str, str] | None:
    """The seal must be the issuing department's official seal."""
    issuer = verified.metadata.issuer_code
    if signer_uscc(signer) != issuer or signer_uscc(verified.signer) != issuer:
        return (
            OFD_SIGNER_MISMATCH,
            "the document is sealed by another organisation than the one that issued the licence",
        )
    try:
        kind = structures.parse_seal(first.seal_der or b"").kind_code
    except SealStructureError:
        return OFD_SIGNATURE_INVALID, "the seal in the signature does not parse"
    if kind != SealKind.OFFICIAL.code:
        return (
            OFD_SIGNER_MISMATCH,
            f"the document is sealed with a seal of type {kind}, not the official seal",
        )
    return None
