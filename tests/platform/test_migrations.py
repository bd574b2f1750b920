"""The migrations produce exactly the schema the models declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from govtrust.db import Database
from govtrust.migrate import current_revision, head_revision, is_up_to_date, upgrade_to_head
from govtrust.schema import metadata


def test_models_and_migrations_agree(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == [], f"models and migrations differ; run scripts/new_migration.py: {diff}"


def test_database_is_at_head_and_upgrade_is_idempotent(database: Database) -> None:
    assert head_revision() is not None
    assert current_revision(database.engine) == head_revision()
    upgrade_to_head(database.engine)
    assert is_up_to_date(database.engine)


def test_empty_database_is_behind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert current_revision(db.engine) is None
        assert not is_up_to_date(db.engine)
    finally:
        db.dispose()
