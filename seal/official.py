"""Departments' official seals as other packages need them: their certificates, for the licence
trust list (offline QR verifiers recognise a department's seal by its certificate)."""

from __future__ import annotations

from sqlalchemy import func, select

from govtrust.db import Database
from seal.models import SealRow
from seal.types import SealKind


def official_seal_certificates(db: Database) -> list[bytes]:
    """The DER certificate that signs licences of every legal person's official seal that has
    one, oldest seal first: the P-256 (PDF) certificate of an SM2 seal, the seal's certificate
    otherwise; revoked seals included (licences they sealed must still be recognised)."""
    query = (
        select(func.coalesce(SealRow.pdf_certificate_der, SealRow.certificate_der))
        .where(
            SealRow.kind == SealKind.OFFICIAL.value,
            SealRow.owner_kind == "legal_person",
            SealRow.certificate_der.is_not(None),
        )
        .order_by(SealRow.id)
    )
    with db.read() as session:
        return [d for d in session.scalars(query) if d]
