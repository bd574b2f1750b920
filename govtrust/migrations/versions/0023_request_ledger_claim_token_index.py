"""an index on the request ledger's claim token

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 04:05:00.000000

``request_ledger.claim_token`` (owned by ``govtrust.idempotency``) is looked up by a writer that
may write a claimed call's effect late (the CA's group commit writing a batch again after a
lost COMMIT): it writes only the effects whose claims still hold their keys, locking those rows
(``held_claims``), so that a retry which took a key over acts alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("request_ledger") as batch:
        batch.create_index("ix_request_ledger_claim_token", ["claim_token"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("request_ledger") as batch:
        batch.drop_index("ix_request_ledger_claim_token")
