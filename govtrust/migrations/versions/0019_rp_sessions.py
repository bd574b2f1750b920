"""first-party relying-party sessions (the console's)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 18:00:00.000000

``oidc_rp_sessions`` (owned by ``idp.oidc``): one row per console login, found by the digest of
its cookie, with its grant, CSRF token and the times its idle and absolute timeouts run from.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oidc_rp_sessions",
        sa.Column("cookie_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("identity_id", sa.String(length=40), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("id_token", sa.Text(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("cookie_hash"),
    )
    op.create_index("ix_oidc_rp_sessions_grant_id", "oidc_rp_sessions", ["grant_id"])
    op.create_index("ix_oidc_rp_sessions_identity_id", "oidc_rp_sessions", ["identity_id"])


def downgrade() -> None:
    op.drop_index("ix_oidc_rp_sessions_identity_id", table_name="oidc_rp_sessions")
    op.drop_index("ix_oidc_rp_sessions_grant_id", table_name="oidc_rp_sessions")
    op.drop_table("oidc_rp_sessions")
