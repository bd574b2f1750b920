"""Migration 0008 (both backends): annotations made before it, only in the audit log, are copied
into ``licence_annotations``; existing types and licences become revision 1; downgrading drops
what it added."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import command

from govtrust.db import Database
from govtrust.migrate import alembic_config, upgrade_to_head


def _run(database: Database, action: str, target: str) -> None:
    config = alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, target)


def test_existing_annotations_and_types_are_carried_over(database: Database) -> None:
    _run(database, "downgrade", "0007")
    inspector = sa.inspect(database.engine)
    assert "licence_annotations" not in inspector.get_table_names()
    assert "licence_issue_requests" not in inspector.get_table_names()
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    base = "1.2.156.3005.2.11100000MB0143028R001.11430100MB12345675.20260000000001"
    v1, v2 = f"{base}.001.1", f"{base}.002.2"
    licence = {
        "type_code": "11100000MB0143028R001", "issuer_code": "11430100MB12345675",
        "serial": "20260000000001", "licence_number": "n", "holder_identity_id": "h",
        "holder_code_type": "001", "status_reason": "", "valid_from": date(2026, 1, 1),
        "valid_until": None, "issued_at": now, "signing_key_id": "k", "signed_data": "x",
        "qr_payload": "y", "document_pdf": None, "updated_at": now,
    }  # fmt: skip
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO licence_types VALUES (:c, 'n', 'n', 'a', 'a', '[]', '[]', '[]',"
                " '{}', '{}', :t, :t)"
            ),
            {"c": licence["type_code"], "t": now},
        )
        columns = ", ".join(["identifier", "version", "status", "status_index",
                             "previous_identifier", "superseded_by", *licence])  # fmt: skip
        values = ", ".join(f":{c}" for c in columns.split(", "))
        insert = sa.text(f"INSERT INTO licences ({columns}) VALUES ({values})")  # noqa: S608
        connection.execute(
            insert,
            {**licence, "identifier": v1, "version": 1, "status": "revoked", "status_index": 0,
             "previous_identifier": None, "superseded_by": v2},
        )  # fmt: skip
        connection.execute(
            insert,
            {**licence, "identifier": v2, "version": 2, "status": "valid", "status_index": 1,
             "previous_identifier": v1, "superseded_by": None},
        )  # fmt: skip
        details = {"previous": v1, "reason": "住所变更", "changed_fields": ["KZ_ZS"]}
        connection.execute(
            sa.text(
                "INSERT INTO audit_log VALUES (1, :t, 'service:amr', 'licence.new_version', :v,"
                " 'ok', :d, '', '')"
            ),
            {"t": now, "v": v2, "d": json.dumps(details, ensure_ascii=False)},
        )
    upgrade_to_head(database.engine)
    with database.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM licence_annotations")).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert (row["identifier"], row["previous_identifier"], row["version"]) == (v2, v1, 2)
    assert (row["serial"], row["issuer_code"]) == ("20260000000001", "11430100MB12345675")
    assert row["text"] == "住所变更" and json.loads(row["changed_fields"]) == ["KZ_ZS"]
    assert row["annotated_by"] == "service:amr" and row["annotated_by_id"] == ""
    with database.engine.connect() as connection:
        revisions = connection.execute(
            sa.text("SELECT type_code, revision, name, defined_by FROM licence_type_revisions")
        ).all()
        assert [tuple(r) for r in revisions] == [
            ("11100000MB0143028R001", 1, "n", "migration:0008")
        ]
        assert connection.execute(sa.text("SELECT revision FROM licence_types")).scalar() == 1
        assert connection.execute(
            sa.text("SELECT DISTINCT type_revision FROM licences")
        ).scalars().all() == [1]
    _run(database, "downgrade", "0007")
    _run(database, "upgrade", "head")
