"""seal listings ordered from an index (the console's work queues)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 20:40:00.000000

``seal_seals`` (owned by ``seal``): the listings' order (``applied_at`` then ``id``, newest first)
per state, per owner and overall, so that a work queue's first page reads a page of index
entries instead of sorting every seal in that state (bench/console.py, issue 19).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_seal_seals_status_applied", "seal_seals", ["status", "applied_at", "id"])
    op.create_index("ix_seal_seals_owner_applied", "seal_seals", ["owner_id", "applied_at", "id"])
    op.create_index("ix_seal_seals_applied", "seal_seals", ["applied_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_seal_seals_applied", table_name="seal_seals")
    op.drop_index("ix_seal_seals_owner_applied", table_name="seal_seals")
    op.drop_index("ix_seal_seals_status_applied", table_name="seal_seals")
