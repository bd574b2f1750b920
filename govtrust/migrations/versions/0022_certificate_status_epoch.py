"""the issuer status epoch of each certificate's last status change, for delta CRLs

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 03:20:00.000000

``ca_certificates.status_epoch`` (owned by ``ca``): the value of the issuer's status counter
(``ca_counters`` row ``status:<issuer>``) that the certificate's last status change set; 0 for
a certificate whose status never changed. A delta CRL lists the certificates whose epoch is past
the epoch its base CRL read before its entries, instead of those whose change time is past the
base's thisUpdate (a revocation timed before a full CRL's thisUpdate but committed after the
CRL read its entries was in neither). Certificates changed before this revision get their
issuer's current epoch: the next deltas list them again (harmless) rather than miss one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ca_certificates") as batch:
        batch.add_column(
            sa.Column("status_epoch", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_index(
            "ix_ca_certificates_issuer_status_epoch", ["issuer", "status_epoch"], unique=False
        )
    op.execute(
        "UPDATE ca_certificates SET status_epoch = COALESCE("
        "(SELECT value FROM ca_counters WHERE ca_counters.name = 'status:' || ca_certificates.issuer)"
        ", 0) WHERE status <> 'active' OR resumed_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("ca_certificates") as batch:
        batch.drop_index("ix_ca_certificates_issuer_status_epoch")
        batch.drop_column("status_epoch")
