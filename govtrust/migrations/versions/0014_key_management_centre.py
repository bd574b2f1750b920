"""key management centre: paired signing/encryption certificates, escrowed keys, key recoveries

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:20:00.000000

``ca_certificates.paired_with`` links a signing certificate and the encryption certificate the
key management centre issued with it (both ways); ``ca_certificates.escrow_key_id`` is the
encryption certificate's escrowed key in the key store. ``ca_key_recoveries`` holds each
dual-control recovery request (legal basis, recipient certificate, two approvals, delivery).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ca_key_recoveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("certificate_id", sa.String(length=32), nullable=False),
        sa.Column("escrow_key_id", sa.String(length=64), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("recipient_certificate_id", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_approver", sa.String(length=255), nullable=True),
        sa.Column("first_approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("second_approver", sa.String(length=255), nullable=True),
        sa.Column("second_approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_by", sa.String(length=255), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["ca_certificates.id"],
            name=op.f("fk_ca_key_recoveries_certificate_id_ca_certificates"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_certificate_id"],
            ["ca_certificates.id"],
            name=op.f("fk_ca_key_recoveries_recipient_certificate_id_ca_certificates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ca_key_recoveries")),
    )
    op.create_index(
        op.f("ix_ca_key_recoveries_certificate_id"), "ca_key_recoveries", ["certificate_id"]
    )
    op.create_index(op.f("ix_ca_key_recoveries_status"), "ca_key_recoveries", ["status"])
    op.add_column("ca_certificates", sa.Column("paired_with", sa.String(length=32), nullable=True))
    op.add_column(
        "ca_certificates", sa.Column("escrow_key_id", sa.String(length=64), nullable=True)
    )
    op.create_index(op.f("ix_ca_certificates_paired_with"), "ca_certificates", ["paired_with"])


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), as 0008 and 0013 do.
    op.drop_index(op.f("ix_ca_certificates_paired_with"), table_name="ca_certificates")
    op.execute("ALTER TABLE ca_certificates DROP COLUMN escrow_key_id")
    op.execute("ALTER TABLE ca_certificates DROP COLUMN paired_with")
    op.drop_index(op.f("ix_ca_key_recoveries_status"), table_name="ca_key_recoveries")
    op.drop_index(op.f("ix_ca_key_recoveries_certificate_id"), table_name="ca_key_recoveries")
    op.drop_table("ca_key_recoveries")
