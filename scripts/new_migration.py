"""Autogenerate the next Alembic migration from the models: ``python scripts/new_migration.py MSG``.

It upgrades a scratch SQLite database to the current head and diffs the models against it, so
the new revision holds exactly what the models added. Review the file before committing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from govtrust.db import Database
from govtrust.migrate import alembic_config, upgrade_to_head


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: new_migration.py MESSAGE", file=sys.stderr)
        return 2
    config = alembic_config()
    revisions = [r.revision for r in ScriptDirectory.from_config(config).walk_revisions()]
    numbered = [int(r) for r in revisions if r.isdigit()]
    next_id = f"{max(numbered, default=0) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        upgrade_to_head(db.engine)
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.revision(config, message=argv[0], autogenerate=True, rev_id=next_id)
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
