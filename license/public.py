"""What the public verification page may show about a licence, and the checks behind it.

Anyone holding a licence's QR code, PDF, OFD or identifier may ask whether it is genuine. The answer
(:class:`PublicLicenceView`) discloses only the core metadata (name, identifier, issuer,
validity), the holder's name — masked for citizens (``张*``) — and the ``KZ_*`` fields the
licence type marks :attr:`~license.catalogue.FieldSpec.public`; never the holder's ID number
or a status change's reason (free text a department typed). The status shown is what the
issuer's signed status list and the validity window say, with "superseded by version N" for an
annotated licence; the signature outcome comes from :mod:`license.checking`.

No HTTP here: :mod:`govtrust.api.license_http` renders the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from cryptography import x509

from govtrust.errors import InvalidArgument, NotFound
from license.catalogue import LicenceType, get_type
from license.checking import LicenceCheck, State, Verdict
from license.days import licence_day
from license.errors import LicenceVerificationFailed
from license.identifiers import parse_identifier
from license.issuance import LicenceService, StoredLicence
from license.qr import TrustList
from license.records import EffectiveStatus, effective_status
from license.signed_data import HOLDER_RESIDENT_ID, LicenceMetadata
from license.signer import unverified_payload
from license.verification import LicenceVerifier

# Reasons that mean the artefact itself (not its status) failed: the signature did not check.
STATUS_REASONS = frozenset({"STATUS_UNKNOWN", "REVOKED", "SUSPENDED", "EXPIRED", "NOT_YET_VALID"})


class PublicStatus(StrEnum):
    """The status the page shows."""

    VALID = "valid"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    SUPERSEDED = "superseded"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PublicField:
    """One public ``KZ_*`` field: name, labels (the catalogue's, Chinese and English — empty
    when the type has none) and value."""

    name: str
    label: str
    value: str
    label_en: str = ""


@dataclass(frozen=True)
class PublicLicenceView:
    """Everything the public page shows about one licence version (and nothing more)."""

    identifier: str
    name: str
    name_en: str
    number: str
    issuer_name: str
    issuer_code: str
    holder_name: str  # masked for citizens
    holder_is_citizen: bool
    issue_date: date | None
    valid_from: date | None
    valid_until: date | None  # None: long term (长期) when valid_from is known
    fields: tuple[PublicField, ...]
    status: PublicStatus
    version: int
    superseded_by: str | None
    superseded_version: int | None
    previous: str | None
    signature_ok: bool
    verdict: Verdict
    reasons: tuple[str, ...]
    checked: str  # what was checked: "signed_data", "qr", "pdf" or "ofd"
    known: bool  # the licence is in this issuer platform's records

    def to_json(self) -> dict[str, Any]:
        """The view as JSON (dates ISO 8601; the same facts as the page)."""

        def iso(value: date | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "identifier": self.identifier,
            "name": self.name,
            "name_en": self.name_en,
            "number": self.number,
            "issuer": {"name": self.issuer_name, "code": self.issuer_code},
            "holder": {"name": self.holder_name, "citizen": self.holder_is_citizen},
            "issue_date": iso(self.issue_date),
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "fields": [
                {"name": f.name, "label": f.label, "label_en": f.label_en, "value": f.value}
                for f in self.fields
            ],
            "status": self.status.value,
            "version": self.version,
            "superseded_by": self.superseded_by,
            "superseded_version": self.superseded_version,
            "previous": self.previous,
            "signature_ok": self.signature_ok,
            "verdict": self.verdict.name,
            "reasons": list(self.reasons),
            "checked": self.checked,
            "known": self.known,
        }


def mask_name(name: str) -> str:
    """A citizen's name as public pages show it: the first character, then ``*`` (张三 → 张*)."""
    text = name.strip()
    if not text:
        return ""
    return text[0] + "*" * max(1, len(text) - 1)


def signature_ok(check: LicenceCheck) -> bool:
    """Whether the artefact's signature (and chain, issuer, form) checked, status aside."""
    return check.state is not State.UNKNOWN or set(check.reasons) <= STATUS_REASONS


def _unverified_metadata(token: str) -> LicenceMetadata | None:
    """The metadata of stored signed data without checking it (shown only with a failed
    signature flagged; the row is our own record)."""
    try:
        return LicenceMetadata.from_json(unverified_payload(token))
    except (ValueError, LicenceVerificationFailed):
        return None


def _status(
    stored: StoredLicence | None, check: LicenceCheck, today: date, meta: LicenceMetadata | None
) -> PublicStatus:
    if stored is not None and stored.row.superseded_by:
        return PublicStatus.SUPERSEDED
    by_state = {
        State.VALID: PublicStatus.VALID,
        State.REVOKED: PublicStatus.REVOKED,
        State.SUSPENDED: PublicStatus.SUSPENDED,
        State.EXPIRED: PublicStatus.EXPIRED,
        State.NOT_YET_VALID: PublicStatus.NOT_YET_VALID,
    }
    if check.state in by_state:
        return by_state[check.state]
    if stored is None:
        return PublicStatus.UNKNOWN
    # The check could not tell (bad signature or no status list): our own record decides.
    status = effective_status(stored.row, today)
    if status is EffectiveStatus.VALID:
        return PublicStatus.VALID if meta is not None else PublicStatus.UNKNOWN
    return PublicStatus(status.value)


def build_view(
    check: LicenceCheck,
    *,
    checked: str,
    stored: StoredLicence | None = None,
    licence_type: LicenceType | None = None,
    today: date | None = None,
) -> PublicLicenceView:
    """The public view of a checked licence; ``stored`` and ``licence_type`` (when the licence
    is in our records) supply the public fields, version links and the authoritative status."""
    day = today or licence_day()
    meta = _unverified_metadata(stored.signed_data) if stored is not None else None
    citizen = meta.holder_code_type == HOLDER_RESIDENT_ID if meta else False
    holder = meta.holder_name if meta else check.holder_name
    fields: list[PublicField] = []
    if meta is not None and licence_type is not None:
        for spec in licence_type.fields:
            if spec.public and spec.name in meta.fields:
                fields.append(
                    PublicField(spec.name, spec.label, meta.fields[spec.name], spec.label_en)
                )
    row = stored.row if stored is not None else None
    identifier = row.identifier if row is not None else check.identifier
    version = 0
    if identifier:
        try:
            version = parse_identifier(identifier, check_uscc=False).version
        except InvalidArgument:
            version = 0
    superseded_version: int | None = None
    if row is not None and row.superseded_by:
        superseded_version = parse_identifier(row.superseded_by, check_uscc=False).version
    # A legal person's name is public record; a citizen's is masked, and so is a holder of
    # unknown kind (an artefact not in our records: the check does not say which it is).
    holder_shown = holder if meta is not None and not citizen else mask_name(holder)
    return PublicLicenceView(
        identifier=identifier,
        name=meta.name if meta else check.name,
        name_en=licence_type.name_en if licence_type else "",
        number=meta.number if meta else "",
        issuer_name=meta.issuer_name if meta else "",
        issuer_code=meta.issuer_code if meta else check.issuer_code,
        holder_name=holder_shown,
        holder_is_citizen=citizen,
        issue_date=meta.issue_date if meta else None,
        valid_from=meta.valid_from if meta else (row.valid_from if row is not None else None),
        valid_until=meta.valid_until if meta else check.valid_until,
        fields=tuple(fields),
        status=_status(stored, check, day, meta),
        version=version,
        superseded_by=row.superseded_by if row is not None else None,
        superseded_version=superseded_version,
        previous=row.previous_identifier if row is not None else None,
        signature_ok=signature_ok(check),
        verdict=check.verdict,
        reasons=check.reasons,
        checked=checked,
        known=row is not None,
    )


def _records(service: LicenceService, identifier: str) -> tuple[StoredLicence, LicenceType] | None:
    try:
        stored = service.stored(identifier)
    except NotFound:
        return None
    return stored, _licence_type(service, stored)


def _licence_type(service: LicenceService, stored: StoredLicence) -> LicenceType:
    with service.db.read() as session:
        return get_type(session, stored.row.type_code, stored.row.type_revision)


def view_identifier(
    service: LicenceService,
    roots: Sequence[x509.Certificate],
    identifier: str,
    *,
    today: date | None = None,
) -> PublicLicenceView:
    """The page of ``GET /verify/license/<identifier>``: the stored signed data checked against
    ``roots`` and the issuer's status list. Raises ``InvalidLicenceIdentifier`` (malformed)
    or :class:`NotFound` (no such licence here)."""
    try:
        checked = LicenceVerifier(service, roots).check("identifier", identifier, today=today)
    except NotFound:
        raise NotFound(f"no licence {identifier}") from None
    stored = checked.stored
    assert stored is not None  # presented by identifier: the registry's record
    return build_view(
        checked.check,
        checked="signed_data",
        stored=stored,
        licence_type=_licence_type(service, stored),
        today=today,
    )


def view_checked(
    service: LicenceService,
    check: LicenceCheck,
    *,
    checked: str,
    today: date | None = None,
) -> PublicLicenceView:
    """The page for a submitted artefact (QR payload or PDF) already checked: when its
    signature held and the licence is in our records, the records add the public fields and
    the authoritative status; otherwise only what the artefact itself proved is shown."""
    records = _records(service, check.identifier) if signature_ok(check) else None
    if records is None:
        return build_view(check, checked=checked, today=today)
    stored, licence_type = records
    return build_view(check, checked=checked, stored=stored, licence_type=licence_type, today=today)


def view_document(
    service: LicenceService,
    roots: Sequence[x509.Certificate],
    data: bytes,
    *,
    today: date | None = None,
) -> PublicLicenceView:
    """The page for a submitted licence document: a PDF (the PAdES seal and the embedded
    signed data, :func:`license.document_check.check_pdf`) or an OFD (the GB/T 38540 seal and
    the attached signed data, :func:`license.ofd_check.check_ofd_reading`), told apart by the
    bytes. A file that is no readable licence document at all (garbage, truncated, no embedded
    licence) raises :class:`InvalidArgument` naming the problem; one that reads but fails a
    check is reported as invalid. ``checked`` is ``pdf`` or ``ofd``."""
    checked = LicenceVerifier(service, roots).check("document", data, today=today)
    field = checked.document_format or "pdf"
    if checked.embedded is None:  # no readable licence document: the check says why
        raise InvalidArgument.field(field, checked.check.reasons[-1].removeprefix("MALFORMED: "))
    return view_checked(service, checked.check, checked=field, today=today)


def view_qr(
    service: LicenceService,
    trust: TrustList,
    roots: Sequence[x509.Certificate],
    text: str,
    *,
    today: date | None = None,
) -> PublicLicenceView:
    """The page for a submitted QR payload (``GT1:...``), checked offline-style with the trust
    list and the issuers' status lists."""
    checked = LicenceVerifier(service, roots, lambda: trust).check("qr_payload", text, today=today)
    return view_checked(service, checked.check, checked="qr", today=today)
