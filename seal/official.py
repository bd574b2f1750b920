"""Departments' official seals as other packages need them: their certificates, for the licence
trust list (offline QR verifiers recognise a department's seal by its certificate; an SM2 seal's
SM2 certificate is what its OFD licences are sealed with)."""

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


def official_seal_sm2_certificates(db: Database) -> list[bytes]:
    """The SM2 certificate (GB/T 38540 signatures, OFD) of every legal person's official seal
    that is an SM2 seal (it holds a separate P-256 certificate for PDF), oldest seal first;
    revoked seals included, as in :func:`official_seal_certificates`."""
    query = (
        select(SealRow.certificate_der)
        .where(
            SealRow.kind == SealKind.OFFICIAL.value,
            SealRow.owner_kind == "legal_person",
            SealRow.certificate_der.is_not(None),
            SealRow.pdf_certificate_der.is_not(None),
        )
        .order_by(SealRow.id)
    )
    with db.read() as session:
        return [d for d in session.scalars(query) if d]
