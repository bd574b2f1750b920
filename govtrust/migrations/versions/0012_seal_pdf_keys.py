"""seal PDF keys: an SM2 seal also holds a P-256 key and certificate for PAdES

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 23:40:00.000000

An SM2 seal (GB/T 38540 SES signatures, OFD) keeps its SM2 key and certificate in ``key_id`` /
``certificate_id`` / ``certificate_der`` and, because international PDF validators cannot check
SM2, a P-256 key and certificate for PAdES in the new ``pdf_*`` columns; both follow the seal's
one lifecycle. ECDSA seals leave them empty (their one key serves both).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("seal_seals") as batch:
        batch.add_column(sa.Column("pdf_key_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("pdf_certificate_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("pdf_certificate_der", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("seal_seals") as batch:
        batch.drop_column("pdf_certificate_der")
        batch.drop_column("pdf_certificate_id")
        batch.drop_column("pdf_key_id")
