"""cluster members, the claiming process of a request-ledger key, the holder and token of an
IssueLicense claim

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 20:30:00.000000

``cluster_members`` (owned by ``govtrust.lease``): one row per serving process, renewed every
second or so; a process that stops renewing is gone. ``licence_issue_requests`` gains the
claiming process (``holder``) and a random ``claim_token`` replaced on every takeover: a claim
whose holder is gone is taken over at once, and the claimant's completing write checks the
token, so a slow claimant's late write never lands after a takeover. ``request_ledger`` gains
the claiming process too (taken over once it is gone and none of its sessions is left).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_members",
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("holder", name=op.f("pk_cluster_members")),
    )
    with op.batch_alter_table("request_ledger") as batch:
        batch.add_column(
            sa.Column("holder", sa.String(length=200), nullable=False, server_default="")
        )
    with op.batch_alter_table("licence_issue_requests") as batch:
        batch.add_column(
            sa.Column("holder", sa.String(length=200), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("claim_token", sa.String(length=32), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("licence_issue_requests") as batch:
        batch.drop_column("claim_token")
        batch.drop_column("holder")
    with op.batch_alter_table("request_ledger") as batch:
        batch.drop_column("holder")
    op.drop_table("cluster_members")
