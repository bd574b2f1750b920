"""bulk licence import: the source key of every imported row and the licence it became

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 09:30:00.000000

``licence_sources`` (owned by ``license``) makes ``govtrust license import`` / IssueLicenses
idempotent per row: primary key ``(issuer_code, source_key)``, written in the transaction that
stores the licence.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "licence_sources",
        sa.Column("issuer_code", sa.String(length=18), nullable=False),
        sa.Column("source_key", sa.String(length=128), nullable=False),
        sa.Column("identifier", sa.String(length=160), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["identifier"], ["licences.identifier"]),
        sa.PrimaryKeyConstraint("issuer_code", "source_key"),
    )


def downgrade() -> None:
    op.drop_table("licence_sources")
