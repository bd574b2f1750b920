"""licence annotations; IssueLicense idempotency keys; licence type revisions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 15:05:25.151262

Adds ``licence_annotations`` (the text, changed fields, who and when of each annotation, 加注件,
returned in ``License.annotations``) and ``licence_issue_requests`` (a department's IssueLicense
``request_id``: the request's SHA-256 and the licence issued under it). Annotations made before
this revision were only in the audit log (``licence.new_version``): they are copied from there.

Licence types get revisions: ``licence_types.revision`` (the current one),
``licence_type_revisions`` (every revision's definition) and ``licences.type_revision`` (the
revision a licence was issued under). Types had no history before: each existing definition
becomes revision 1 (defined at its ``updated_at``), and so do the licences issued until now —
including any issued under a definition that was replaced since, whose earlier form is lost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "licence_issue_requests",
        sa.Column("issuer_code", sa.String(length=18), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("identifier", sa.String(length=160), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(
            "issuer_code", "request_id", name=op.f("pk_licence_issue_requests")
        ),
    )
    annotations = op.create_table(
        "licence_annotations",
        sa.Column("identifier", sa.String(length=160), nullable=False),
        sa.Column("previous_identifier", sa.String(length=160), nullable=False),
        sa.Column("issuer_code", sa.String(length=18), nullable=False),
        sa.Column("type_code", sa.String(length=21), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=1000), nullable=False),
        sa.Column("changed_fields", sa.Text(), nullable=False),
        sa.Column("annotated_by", sa.String(length=200), nullable=False),
        sa.Column("annotated_by_id", sa.String(length=64), nullable=False),
        sa.Column("annotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identifier"],
            ["licences.identifier"],
            name=op.f("fk_licence_annotations_identifier_licences"),
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_licence_annotations")),
    )
    with op.batch_alter_table("licence_annotations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_licence_annotations_chain", ["issuer_code", "serial"], unique=False
        )
    _copy_annotations_from_audit_log(annotations)

    with op.batch_alter_table("licence_types", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("type_revision", sa.Integer(), server_default="1", nullable=False)
        )
    op.create_table(
        "licence_type_revisions",
        sa.Column("type_code", sa.String(length=21), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("name_en", sa.String(length=128), nullable=False),
        sa.Column("defining_authority", sa.String(length=256), nullable=False),
        sa.Column("defining_authority_code", sa.String(length=18), nullable=False),
        sa.Column("issuing_departments", sa.Text(), nullable=False),
        sa.Column("holder_code_types", sa.String(length=32), nullable=False),
        sa.Column("field_schema", sa.Text(), nullable=False),
        sa.Column("validity", sa.Text(), nullable=False),
        sa.Column("layout", sa.Text(), nullable=False),
        sa.Column("defined_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["type_code"],
            ["licence_types.type_code"],
            name=op.f("fk_licence_type_revisions_type_code_licence_types"),
        ),
        sa.PrimaryKeyConstraint("type_code", "revision", name=op.f("pk_licence_type_revisions")),
    )
    op.execute(
        "INSERT INTO licence_type_revisions (type_code, revision, name, name_en,"
        " defining_authority, defining_authority_code, issuing_departments, holder_code_types,"
        " field_schema, validity, layout, defined_by, created_at)"
        " SELECT type_code, 1, name, name_en, defining_authority, defining_authority_code,"
        " issuing_departments, holder_code_types, field_schema, validity, layout,"
        " 'migration:0008', updated_at FROM licence_types"
    )


def _copy_annotations_from_audit_log(annotations: sa.Table) -> None:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT a.actor, a.recorded_at, a.details, l.identifier, l.previous_identifier,"
            " l.issuer_code, l.type_code, l.serial, l.version"
            " FROM audit_log a JOIN licences l ON l.identifier = a.target"
            " WHERE a.action = 'licence.new_version' ORDER BY a.seq"
        ).columns(recorded_at=sa.DateTime(timezone=True))
    )
    copied = []
    for row in rows:
        details = json.loads(row.details)
        copied.append(
            {
                "identifier": row.identifier,
                "previous_identifier": row.previous_identifier or details.get("previous", ""),
                "issuer_code": row.issuer_code,
                "type_code": row.type_code,
                "serial": row.serial,
                "version": row.version,
                "text": str(details.get("reason", ""))[:1000],
                "changed_fields": json.dumps(details.get("changed_fields", []), ensure_ascii=False),
                "annotated_by": row.actor[:200],
                "annotated_by_id": "",
                "annotated_at": row.recorded_at,
            }
        )
    if copied:
        op.bulk_insert(annotations, copied)


def downgrade() -> None:
    with op.batch_alter_table("licence_annotations", schema=None) as batch_op:
        batch_op.drop_index("ix_licence_annotations_chain")
    op.drop_table("licence_annotations")
    op.drop_table("licence_issue_requests")
    op.drop_table("licence_type_revisions")
    # Plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch copy would drop and re-create
    # tables other tables' rows refer to, which SQLite's foreign keys refuse.
    op.execute("ALTER TABLE licences DROP COLUMN type_revision")
    op.execute("ALTER TABLE licence_types DROP COLUMN revision")
