"""Loading many already-signed licence rows at once (migrating an earlier system, benchmarks).

:func:`load_licences` writes already-signed licences as :class:`~license.issuance.LicenceService`
stores them (secrets encrypted by the vault under its scheme, status indexes reserved from the
issuer's status list) without signing or rendering anything, in chunks of one transaction
each, and audits the load once per chunk. Each type must be in the catalogue (:class:`NotFound`
otherwise, and nothing of the chunk is written); identifiers are checked as at issuance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import insert

from govtrust import audit
from govtrust.db import Database
from license.catalogue import get_type
from license.identifiers import build_identifier
from license.models import LicenceRow
from license.status_list import allocate_index
from license.vault import DOCUMENT, OFD_DOCUMENT, QR_PAYLOAD, SIGNED_DATA, LicenceVault

CHUNK = 2000


@dataclass(frozen=True)
class BulkLicence:
    """One licence version to load (its secrets in clear; they are encrypted on the way in)."""

    type_code: str
    issuer_code: str
    serial: str
    licence_number: str
    holder_identity_id: str
    holder_code_type: str
    signed_data: str
    qr_payload: str
    valid_from: date
    signing_key_id: str
    document_pdf: bytes | None = None
    document_ofd: bytes | None = None
    valid_until: date | None = None


def load_licences(
    db: Database, vault: LicenceVault, licences: Sequence[BulkLicence], *, actor: str
) -> list[str]:
    """Insert ``licences`` (version 1, valid) and return their identifiers."""
    identifiers: list[str] = []
    for start in range(0, len(licences), CHUNK):
        chunk = licences[start : start + CHUNK]
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        with db.transaction() as session:
            revisions = {t: get_type(session, t).revision for t in {b.type_code for b in chunk}}
            first: dict[str, int] = {}
            for issuer in sorted({b.issuer_code for b in chunk}):
                count = sum(1 for b in chunk if b.issuer_code == issuer)
                first[issuer] = allocate_index(session, issuer, count)
            for item in chunk:
                ident = str(build_identifier(item.type_code, item.issuer_code, item.serial))
                status_index = first[item.issuer_code]
                first[item.issuer_code] += 1
                rows.append(
                    {
                        "identifier": ident,
                        "type_code": item.type_code,
                        "type_revision": revisions[item.type_code],
                        "issuer_code": item.issuer_code,
                        "serial": item.serial,
                        "version": 1,
                        "licence_number": item.licence_number,
                        "holder_identity_id": item.holder_identity_id,
                        "holder_code_type": item.holder_code_type,
                        "status": "valid",
                        "status_reason": "",
                        "status_index": status_index,
                        "valid_from": item.valid_from,
                        "valid_until": item.valid_until,
                        "issued_at": now,
                        "previous_identifier": None,
                        "superseded_by": None,
                        "signing_key_id": item.signing_key_id,
                        "signed_data": vault.seal_text(item.signed_data, SIGNED_DATA, ident),
                        "qr_payload": vault.seal_text(item.qr_payload, QR_PAYLOAD, ident),
                        "document_pdf": None
                        if item.document_pdf is None
                        else vault.seal(item.document_pdf, DOCUMENT, ident),
                        "document_ofd": None
                        if item.document_ofd is None
                        else vault.seal(item.document_ofd, OFD_DOCUMENT, ident),
                        "updated_at": now,
                    }
                )
            session.execute(insert(LicenceRow), rows)
            audit.append(
                session,
                actor=actor,
                action="licence.bulk_load",
                target=f"licences:{len(rows)}",
                details={"count": len(rows), "first": rows[0]["identifier"]},
            )
        identifiers += [r["identifier"] for r in rows]
    return identifiers
