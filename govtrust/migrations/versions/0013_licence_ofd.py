"""licences as OFD: a licence type names its document formats; a licence keeps its OFD

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 02:30:00.000000

``licence_types.document_formats`` (and each revision's) lists the files a licence of the type
is issued as: ``pdf`` (PAdES), ``ofd`` (GB/T 38540 seal signatures) or ``pdf,ofd``; existing
types keep ``pdf``. ``licences.document_ofd`` holds the sealed OFD, encrypted like
``document_pdf`` (``license.vault``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("licence_types", "licence_type_revisions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "document_formats", sa.String(length=16), server_default="pdf", nullable=False
                )
            )
    with op.batch_alter_table("licences") as batch:
        batch.add_column(sa.Column("document_ofd", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35), as 0008 does: a batch copy would drop and
    # re-create tables other tables' rows refer to, which SQLite's foreign keys refuse.
    op.execute("ALTER TABLE licences DROP COLUMN document_ofd")
    op.execute("ALTER TABLE licence_type_revisions DROP COLUMN document_formats")
    op.execute("ALTER TABLE licence_types DROP COLUMN document_formats")
