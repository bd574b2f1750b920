"""instance bootstrap record: master key check value and key store kind

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 17:00:00.000000

Adds ``instance_bootstrap``, one row holding the master key's check value (an HMAC of a fixed
label, never the key) and the key store (``soft`` or ``pkcs11`` with the token label) the
instance was bootstrapped with. A migration has no master key, so instances bootstrapped before
this revision get the row on their next start (``govtrust.instance.check_bootstrap``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_bootstrap",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("master_key_check", sa.String(length=64), nullable=False),
        sa.Column("keystore", sa.String(length=16), nullable=False),
        sa.Column("pkcs11_token_label", sa.String(length=200), nullable=True),
        sa.Column("bootstrapped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_bootstrap")),
    )


def downgrade() -> None:
    op.drop_table("instance_bootstrap")
