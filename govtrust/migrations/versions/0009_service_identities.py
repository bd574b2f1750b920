"""service identities: business systems calling over mTLS, with their roles

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 16:41:33.304260

Adds ``idp_service_identities``: one row per registered business system, keyed by the
``system_id`` its service certificate names, with its govtrust roles and status.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idp_service_identities",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_idp_service_identities")),
    )


def downgrade() -> None:
    op.drop_table("idp_service_identities")
