"""the parent link of a rotated refresh token

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 06:40:00.000000

``oidc_refresh_tokens.rotated_from`` (owned by ``idp.oidc``) is the digest of the token whose
rotation minted the row: the reuse interval (``idp/oidc/reuse.py``) finds a rotated token's
immediate successor by it, to re-answer a rotation whose answer was lost. Tokens minted before
this revision have none, so a rotation made before the upgrade is never re-answered (its reuse
revokes the family, as before). No index: the successor is looked up within its grant
(``ix_oidc_refresh_tokens_grant``), on the rare re-presentation only, so the rotation's insert
maintains no extra index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oidc_refresh_tokens") as batch:
        batch.add_column(sa.Column("rotated_from", sa.LargeBinary(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oidc_refresh_tokens") as batch:
        batch.drop_column("rotated_from")
