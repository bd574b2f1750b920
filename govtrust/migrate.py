"""Schema migrations (Alembic), run by ``govtrust serve`` at start and by the test fixtures."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option("script_location", "govtrust:migrations")
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database to the newest schema."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")


def current_revisions(engine: Engine) -> frozenset[str]:
    """The revisions the database is at (empty for an empty database)."""
    with engine.connect() as connection:
        return frozenset(MigrationContext.configure(connection).get_current_heads())


def head_revisions() -> frozenset[str]:
    """The newest revisions shipped with this version of govtrust (one per branch)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def is_up_to_date(engine: Engine) -> bool:
    """Whether the database schema is at the shipped heads."""
    return current_revisions(engine) == head_revisions()
