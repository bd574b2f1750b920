"""The migrations produce exactly the schema the models declare, on both backends."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from govtrust.db import Database
from govtrust.migrate import current_revisions, head_revisions, is_up_to_date, upgrade_to_head
from govtrust.schema import metadata


def test_models_and_migrations_agree(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == [], f"models and migrations differ; run scripts/new_migration.py: {diff}"


def test_database_is_at_head_and_upgrade_is_idempotent(database: Database) -> None:
    assert head_revisions()
    assert current_revisions(database.engine) == head_revisions()
    upgrade_to_head(database.engine)
    assert is_up_to_date(database.engine)


def test_empty_database_is_behind(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert current_revisions(db.engine) == frozenset()
        assert not is_up_to_date(db.engine)
    finally:
        db.dispose()
