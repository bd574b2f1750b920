"""e-seals: seals, use grants, seal history, seal makers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:20:00

Only the seal tables; identities and certificates are referenced by id without foreign keys,
so this branch depends on the platform's base revision alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seal_makers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("key_algorithm", sa.String(length=32), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_seal_makers")),
    )
    op.create_table(
        "seal_seals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_name", sa.String(length=256), nullable=False),
        sa.Column("owner_uscc", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("business_number", sa.String(length=16), nullable=False),
        sa.Column("taxpayer_number", sa.String(length=32), nullable=False),
        sa.Column("named_person_id", sa.String(length=64), nullable=False),
        sa.Column("named_person_name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=1000), nullable=False),
        sa.Column("shape", sa.String(length=16), nullable=False),
        sa.Column("width_mm", sa.Integer(), nullable=False),
        sa.Column("height_mm", sa.Integer(), nullable=False),
        sa.Column("key_algorithm", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("certificate_id", sa.String(length=32), nullable=True),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=True),
        sa.Column("seal_structure", sa.LargeBinary(), nullable=True),
        sa.Column("filing_number", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applicant_id", sa.String(length=64), nullable=False),
        sa.Column("applicant_actor", sa.String(length=256), nullable=False),
        sa.Column("apply_reason", sa.String(length=1000), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaces_seal_id", sa.String(length=32), nullable=False),
        sa.Column("replaced_by_seal_id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("official_owner", sa.String(length=64), nullable=True),
        sa.Column("business_slot", sa.String(length=96), nullable=True),
        sa.Column("history_length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seal_seals")),
        sa.UniqueConstraint("business_slot", name=op.f("uq_seal_seals_business_slot")),
        sa.UniqueConstraint("official_owner", name=op.f("uq_seal_seals_official_owner")),
    )
    op.create_index(op.f("ix_seal_seals_owner_id"), "seal_seals", ["owner_id"], unique=False)
    op.create_index(op.f("ix_seal_seals_status"), "seal_seals", ["status"], unique=False)
    op.create_table(
        "seal_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("seal_id", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=False),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest_algorithm", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=True),
        sa.Column("document_kind", sa.String(length=64), nullable=False),
        sa.Column("related_id", sa.String(length=64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["seal_id"], ["seal_seals.id"], name=op.f("fk_seal_events_seal_id_seal_seals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seal_events")),
        sa.UniqueConstraint("seal_id", "sequence", name=op.f("uq_seal_events_seal_id_sequence")),
    )
    op.create_table(
        "seal_grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("seal_id", sa.String(length=32), nullable=False),
        sa.Column("grantee_id", sa.String(length=64), nullable=False),
        sa.Column("document_kinds", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("granted_by", sa.String(length=256), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=256), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["seal_id"], ["seal_seals.id"], name=op.f("fk_seal_grants_seal_id_seal_seals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seal_grants")),
    )
    op.create_index(op.f("ix_seal_grants_grantee_id"), "seal_grants", ["grantee_id"], unique=False)
    op.create_index(op.f("ix_seal_grants_seal_id"), "seal_grants", ["seal_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_seal_grants_seal_id"), table_name="seal_grants")
    op.drop_index(op.f("ix_seal_grants_grantee_id"), table_name="seal_grants")
    op.drop_table("seal_grants")
    op.drop_table("seal_events")
    op.drop_index(op.f("ix_seal_seals_status"), table_name="seal_seals")
    op.drop_index(op.f("ix_seal_seals_owner_id"), table_name="seal_seals")
    op.drop_table("seal_seals")
    op.drop_table("seal_makers")
