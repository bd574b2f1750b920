"""cluster jobs: a lease with a fencing token per job, and the periods each job ran

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 18:00:00.000000

``cluster_leases`` (owned by ``govtrust.lease``): one row per cluster job — holder, fencing
token (incremented on every acquisition), expiry on the database clock. ``cluster_job_runs``:
one row per job and period (primary key), so a period is claimed and done once whatever replica
holds the lease.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_leases",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_cluster_leases")),
    )
    op.create_table(
        "cluster_job_runs",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("period", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("job", "period", name=op.f("pk_cluster_job_runs")),
    )


def downgrade() -> None:
    op.drop_table("cluster_job_runs")
    op.drop_table("cluster_leases")
