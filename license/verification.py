"""One licence verification: a licence presented in any form, checked the same way for everyone.

A licence reaches a verifier as its identifier (the registry's signed data is checked), its
signed data (a compact JWS), its offline QR payload (``GT1:`` COSE_Sign1) or its sealed
document: a PDF, or an OFD (bytes that start as a zip, ``PK\x03\x04``).
:class:`LicenceVerifier` is the one place that knows which check each form takes
(:func:`license.checking.check_signed_data`, :func:`~license.checking.check_qr`,
:func:`license.document_check.check_pdf_reading`, :func:`license.ofd_check.check_ofd_reading`)
and what it checks against: the CA roots (ECDSA and SM2),
the department trust list and the issuers' signed status lists (as an offline verifier's).
``LicenseService.VerifyLicense``, ``VerifyService.VerifyLicense``, the public check page and
``govtrust license verify`` all ask it, and then report the answer each in its own shape.

An identifier that is malformed raises ``InvalidLicenceIdentifier``; one that is well formed
but not registered here raises :class:`govtrust.errors.NotFound`. Everything else about the
evidence is reported in the :class:`~license.checking.LicenceCheck`, never raised, except a
document over the document limits or a spent request budget (``ResourceExhausted``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, get_args

from cryptography import x509

from govtrust import audit
from govtrust.principal import Principal
from license.checking import LicenceCheck, check_qr, check_signed_data
from license.document_check import check_pdf_reading
from license.identifiers import parse_identifier
from license.issuance import LicenceService, StoredLicence
from license.ofd_check import check_ofd_reading, is_ofd
from license.pdf_reader import EmbeddedLicence
from license.qr import TrustList
from license.runtime import StatusLists

LicenceForm = Literal["identifier", "signed_data", "qr_payload", "document"]
DocumentFormat = Literal["", "pdf", "ofd"]
LICENCE_FORMS: tuple[LicenceForm, ...] = get_args(LicenceForm)
VERIFY_ACTION = "licence.verify"  # LicenseService.VerifyLicense by an authenticated caller
# each form as a verification report's evidence kind (``verify.report.EvidenceKind``'s values)
EVIDENCE_KINDS: dict[LicenceForm, str] = {
    "identifier": "license_identifier",
    "signed_data": "license_signed_data",
    "qr_payload": "license_qr_payload",
    "document": "license_document",
}


@dataclass(frozen=True)
class CheckedLicence:
    """One presented licence and its check.

    ``signed_data`` is the licence's JWS that the check read: as presented, the registry's
    (by identifier), embedded in the PDF's sealed revision or attached to the OFD; empty for a
    QR payload and for a file that holds no readable licence. ``stored`` is the registry's
    record when the licence was presented by identifier. ``embedded`` is what a PDF or OFD
    carries (None for other forms and for a file that holds no readable licence);
    ``document_format`` says which of the two a document was (``pdf``, ``ofd``; empty for the
    other forms).
    """

    form: LicenceForm
    check: LicenceCheck
    signed_data: str = ""
    stored: StoredLicence | None = None
    embedded: EmbeddedLicence | None = None
    document_format: DocumentFormat = ""


@dataclass(frozen=True)
class LicenceVerifier:
    """Checks presented licences against ``roots``, the department ``trust`` list (asked for
    only when a QR payload needs it, as the runtime rebuilds it periodically; the roots alone
    when None) and the issuers' status lists kept by ``service``."""

    service: LicenceService
    roots: Sequence[x509.Certificate]
    trust: Callable[[], TrustList] | None = None

    def check(
        self, form: LicenceForm, value: str | bytes, *, today: date | None = None
    ) -> CheckedLicence:
        """The check of ``value`` presented as ``form`` on licence day ``today`` (the current
        Beijing day when None)."""
        lists = StatusLists(self.service, self.roots)
        if form == "document":
            if not isinstance(value, bytes):
                raise TypeError("a licence document is bytes")
            kind: DocumentFormat
            if is_ofd(value):
                ofd = check_ofd_reading(value, self.roots, lists, today=today)
                check, embedded, kind = ofd.check, ofd.embedded, "ofd"
            else:
                pdf = check_pdf_reading(value, self.roots, lists, today=today)
                check, embedded, kind = pdf.check, pdf.embedded, "pdf"
            signed = embedded.signed_data if embedded is not None else ""
            return CheckedLicence(form, check, signed, embedded=embedded, document_format=kind)
        if not isinstance(value, str):
            raise TypeError(f"a licence's {form} is text")
        if form == "identifier":
            parse_identifier(value, check_uscc=False)
            stored = self.service.stored(value)
            check = check_signed_data(stored.signed_data, self.roots, lists, today=today)
            return CheckedLicence(form, check, stored.signed_data, stored=stored)
        if form == "signed_data":
            return CheckedLicence(
                form, check_signed_data(value, self.roots, lists, today=today), value
            )
        if form == "qr_payload":
            trust = self.trust() if self.trust is not None else TrustList(self.roots)
            return CheckedLicence(form, check_qr(value, trust, lists, today=today))
        raise ValueError(f"no licence form {form!r}")

    def check_for(
        self,
        principal: Principal,
        form: LicenceForm,
        value: str | bytes,
        *,
        today: date | None = None,
        report_id: str = "",
    ) -> CheckedLicence:
        """:meth:`check` for an authenticated caller, recorded as ``verify.license`` records
        are (``licence.verify``): the evidence's SHA-256 as the target, the verdict and the
        caller, never the evidence. The public page (anonymous, high volume) calls
        :meth:`check` and records nothing."""
        checked = self.check(form, value, today=today)
        raw = value if isinstance(value, bytes) else value.encode()
        digest = hashlib.sha256(raw).hexdigest()
        with self.service.db.transaction() as session:
            audit.append(
                session,
                actor=principal.actor,
                action=VERIFY_ACTION,
                target=f"sha256:{digest}",
                outcome=checked.check.verdict.value,
                details={
                    "report_id": report_id,
                    "verdict": checked.check.verdict.value,
                    "evidence_kind": EVIDENCE_KINDS[form],
                    "evidence_sha256": digest,
                },
            )
        return checked
