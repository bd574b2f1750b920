"""The CA hierarchy's freshness as an operator sees it: each CA's certificate, its newest
published CRLs (thisUpdate / nextUpdate, overdue past nextUpdate) and its stored OCSP
responses (how many, the oldest thisUpdate and the earliest nextUpdate, how many overdue).

Read-only: nothing is rebuilt or re-signed here (the periodic ``ca.refresh`` job does that),
so looking at the page never changes what it shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from ca.context import CaContext
from ca.models import CaCertificate, CaCrl, CaOcspResponse
from ca.signing import now as ca_now
from govtrust.db import as_utc


@dataclass(frozen=True)
class CrlFreshness:
    """The newest published CRL of one kind (full or delta) of a CA."""

    crl_number: int
    this_update: datetime
    next_update: datetime
    entry_count: int
    overdue: bool


@dataclass(frozen=True)
class OcspFreshness:
    """The stored (pre-produced) OCSP responses of a CA's certificates."""

    responses: int
    oldest_this_update: datetime | None
    earliest_next_update: datetime | None
    overdue: int  # responses past their nextUpdate


@dataclass(frozen=True)
class CaFreshness:
    """One CA of the hierarchy with its revocation information's freshness."""

    name: str
    role: str  # root | issuing
    parent: str | None
    algorithm: str
    subject: str
    not_after: datetime
    full_crl: CrlFreshness | None
    delta_crl: CrlFreshness | None
    ocsp: OcspFreshness

    @property
    def overdue(self) -> bool:
        """Whether anything this CA publishes is past its nextUpdate (or was never published)."""
        return (
            self.full_crl is None
            or self.full_crl.overdue
            or (self.delta_crl is not None and self.delta_crl.overdue)
            or self.ocsp.overdue > 0
        )


def freshness(ctx: CaContext, at: datetime | None = None) -> list[CaFreshness]:
    """Every certificate-issuing CA (roots first) with its newest CRLs and OCSP responses."""
    moment = at or ca_now()
    out = []
    with ctx.db.read() as session:
        ocsp_rows = session.execute(
            select(
                CaCertificate.issuer,
                func.count(),
                func.min(CaOcspResponse.this_update),
                func.min(CaOcspResponse.next_update),
            )
            .select_from(CaOcspResponse)
            .join(CaCertificate, CaCertificate.id == CaOcspResponse.certificate_id)
            .group_by(CaCertificate.issuer)
        ).all()
        overdue_rows = session.execute(
            select(CaCertificate.issuer, func.count())
            .select_from(CaOcspResponse)
            .join(CaCertificate, CaCertificate.id == CaOcspResponse.certificate_id)
            .where(CaOcspResponse.next_update < moment)
            .group_by(CaCertificate.issuer)
        ).all()
        ocsp = {issuer: (int(n), first, earliest) for issuer, n, first, earliest in ocsp_rows}
        overdue = {issuer: int(n) for issuer, n in overdue_rows}

        def newest(name: str, delta: bool) -> CrlFreshness | None:
            row = session.scalars(
                select(CaCrl)
                .where(CaCrl.issuer == name, CaCrl.delta == delta)
                .order_by(CaCrl.crl_number.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            next_update = as_utc(row.next_update)
            return CrlFreshness(
                row.crl_number,
                as_utc(row.this_update),
                next_update,
                row.entry_count,
                next_update <= moment,
            )

        for name in ctx.hierarchy.ca_names():
            issuer = ctx.hierarchy.get(name)
            count, first, earliest = ocsp.get(name, (0, None, None))
            out.append(
                CaFreshness(
                    name=name,
                    role=issuer.role,
                    parent=issuer.parent,
                    algorithm=issuer.key.algorithm.value,
                    subject=issuer.subject.human_friendly,
                    not_after=as_utc(issuer.not_after),
                    full_crl=newest(name, False),
                    delta_crl=newest(name, True),
                    ocsp=OcspFreshness(
                        count,
                        as_utc(first) if first is not None else None,
                        as_utc(earliest) if earliest is not None else None,
                        overdue.get(name, 0),
                    ),
                )
            )
    return out
