"""Alembic environment: migrations run on a connection handed over by ``govtrust.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from govtrust.db import make_engine
from govtrust.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url") or "sqlite://"
        engine = make_engine(url) if url != "sqlite://" else create_engine(url)
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()


run()
