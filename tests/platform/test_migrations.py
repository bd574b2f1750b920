"""The migrations produce exactly the schema the models declare, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from govtrust.db import Database
from govtrust.migrate import (
    alembic_config,
    current_revisions,
    head_revisions,
    is_up_to_date,
    upgrade_to_head,
)
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


def test_0022_gives_changed_certificates_their_issuers_epoch(tmp_path: Path) -> None:
    """Certificates whose status changed before 0022 get their issuer's current status epoch
    (so the next delta CRLs list them rather than miss one); untouched ones get 0."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        config = alembic_config()
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0021")
        moment = datetime(2026, 12, 1, tzinfo=UTC)
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO ca_issuers (name, role, key_id, key_algorithm, serial, der,"
                    " not_before, not_after, created_at) VALUES"
                    " ('citizen', 'issuing', 'k', 'ec-p256', '01', x'00', :t, :t, :t)"
                ),
                {"t": moment},
            )
            connection.execute(
                text("INSERT INTO ca_counters (name, value) VALUES ('status:citizen', 7)")
            )
            for serial, status, resumed in (
                ("0a", "active", None),
                ("0b", "revoked", None),
                ("0c", "suspended", None),
                ("0d", "active", moment),
            ):
                connection.execute(
                    text(
                        "INSERT INTO ca_certificates (id, issuer, serial, fingerprint_sha256,"
                        " profile, subject_kind, subject, der, key_algorithm, not_before,"
                        " not_after, issued_at, status, status_changed_at, resumed_at) VALUES"
                        " (:serial, 'citizen', :serial, :serial, 'citizen', 'citizen', 's',"
                        " x'00', 'ec-p256', :t, :t, :t, :status, :t, :resumed)"
                    ),
                    {"serial": serial, "status": status, "resumed": resumed, "t": moment},
                )
        upgrade_to_head(db.engine)
        with db.engine.connect() as connection:
            epochs: dict[str, int] = dict(
                connection.execute(text("SELECT serial, status_epoch FROM ca_certificates")).all()
            )
        assert epochs == {"0a": 0, "0b": 7, "0c": 7, "0d": 7}
    finally:
        db.dispose()
