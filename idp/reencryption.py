"""Moving the registry's personal data to another at-rest scheme (``govtrust reencrypt``).

The encrypted columns of the identity registry's own tables: ``idp_citizens.id_number_enc``,
``idp_citizens.phone_enc`` and ``idp_staff.phone_enc``. Blind indexes stay as they are: they do
not depend on the encryption scheme (:mod:`idp.pii`), so look-ups work throughout the move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table

from govtrust.db import Database
from govtrust.reencryption import Move, Progress, Row, TableReport, TableSpec, count_rows
from govtrust.reencryption import reencrypt_table as _reencrypt_table
from hsm.atrest import scheme_of
from idp.models import CitizenRow, StaffRow
from idp.pii import PURPOSE_ID_NUMBER, PURPOSE_PHONE, PiiCodec

_COLUMNS: dict[str, dict[str, str]] = {
    "idp_citizens": {"id_number_enc": PURPOSE_ID_NUMBER, "phone_enc": PURPOSE_PHONE},
    "idp_staff": {"phone_enc": PURPOSE_PHONE},
}


def _spec(table: Table, codec: PiiCodec) -> TableSpec:
    purposes = _COLUMNS[table.name]
    target = codec.scheme

    def pending(row: Row) -> bool:
        return any(
            row[c] is not None and scheme_of(row[c], f"{c} of {table.name} {row['id']}") != target
            for c in purposes
        )

    def move(row: Row) -> Move:
        values: dict[str, Any] = {}
        plain: dict[str, Any] = {}
        for column, purpose in purposes.items():
            if row[column] is None:
                plain[column] = None
                continue
            new, plain[column] = codec.reencrypt(row[column], purpose)
            if new is not row[column]:
                values[column] = new
        return Move(values, plain)

    def decrypt(row: Row) -> Mapping[str, Any]:
        return {
            c: None if row[c] is None else codec.decrypt(row[c], p) for c, p in purposes.items()
        }

    return TableSpec(
        table=table,
        key="id",
        columns=tuple(purposes),
        pending=pending,
        move=move,
        plain=decrypt,
        audit_action="identity.pii.reencrypt",
    )


_TABLES: tuple[Table, ...] = (CitizenRow.__table__, StaffRow.__table__)  # type: ignore[assignment]


def personal_data_tables(codec: PiiCodec) -> list[TableSpec]:
    """The registry's tables with encrypted columns, to be moved to ``codec.scheme``."""
    return [_spec(table, codec) for table in _TABLES]


def personal_data_rows(db: Database) -> int:
    """The rows :func:`reencrypt_personal_data` scans (citizens and staff)."""
    return sum(count_rows(db, table) for table in _TABLES)


def reencrypt_personal_data(
    db: Database,
    codec: PiiCodec,
    *,
    actor: str,
    batch_size: int,
    progress: Progress | None = None,
) -> list[TableReport]:
    """Move every citizen's and staff member's encrypted personal data to ``codec.scheme``
    (batches, compare-and-set, each moved row verified; :mod:`govtrust.reencryption`)."""
    return [
        _reencrypt_table(
            db,
            spec,
            scheme=codec.scheme.value,
            actor=actor,
            batch_size=batch_size,
            progress=progress,
        )
        for spec in personal_data_tables(codec)
    ]
