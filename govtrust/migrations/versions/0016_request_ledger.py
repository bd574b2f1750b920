"""request ledger: idempotency keys of mutating calls and their answers

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 17:45:00.000000

``request_ledger`` (owned by ``govtrust.idempotency``): primary key ``(operation, principal,
request_id)``, the request's SHA-256, the claim (token, audit head, time) and, once answered,
the encrypted answer. Concurrent duplicates collide on the primary key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_ledger",
        sa.Column("operation", sa.String(length=200), nullable=False),
        sa.Column("principal", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claim_token", sa.String(length=64), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint(
            "operation", "principal", "request_id", name=op.f("pk_request_ledger")
        ),
    )


def downgrade() -> None:
    op.drop_table("request_ledger")
