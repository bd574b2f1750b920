"""Moving the licence secrets to another at-rest scheme (``govtrust reencrypt``).

The encrypted columns of the ``licences`` table: ``signed_data`` and ``qr_payload`` (text,
``gt1:`` + base64url), ``document_pdf`` and ``document_ofd`` (binary, optional); each bound to
its column and the licence identifier (:mod:`license.vault`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from govtrust.db import Database
from govtrust.reencryption import Move, Progress, Row, TableReport, TableSpec, count_rows
from govtrust.reencryption import reencrypt_table as _reencrypt_table
from license.models import LicenceRow
from license.vault import DOCUMENT, OFD_DOCUMENT, QR_PAYLOAD, SIGNED_DATA, LicenceVault

_TEXT = (SIGNED_DATA, QR_PAYLOAD)
_BINARY = (DOCUMENT, OFD_DOCUMENT)


def licence_table(vault: LicenceVault) -> TableSpec:
    """The licences table's encrypted columns, to be moved to ``vault.scheme``."""
    target = vault.scheme

    def pending(row: Row) -> bool:
        ident = row["identifier"]
        return any(vault.scheme_of_text(row[c], c, ident) != target for c in _TEXT) or any(
            row[c] is not None and vault.scheme_of(row[c], c, ident) != target for c in _BINARY
        )

    def move(row: Row) -> Move:
        ident = row["identifier"]
        values: dict[str, Any] = {}
        plain: dict[str, Any] = {}
        for column in _TEXT:
            new_text, plain[column] = vault.reseal_text(row[column], column, ident)
            if new_text is not row[column]:
                values[column] = new_text
        for column in _BINARY:
            if row[column] is None:
                plain[column] = None
                continue
            new, plain[column] = vault.reseal(row[column], column, ident)
            if new is not row[column]:
                values[column] = new
        return Move(values, plain)

    def decrypt(row: Row) -> Mapping[str, Any]:
        ident = row["identifier"]
        opened: dict[str, Any] = {c: vault.open_text(row[c], c, ident) for c in _TEXT}
        for column in _BINARY:
            value = row[column]
            opened[column] = None if value is None else vault.open(value, column, ident)
        return opened

    return TableSpec(
        table=LicenceRow.__table__,  # type: ignore[arg-type]
        key="identifier",
        columns=_TEXT + _BINARY,
        pending=pending,
        move=move,
        plain=decrypt,
        audit_action="licence.vault.reencrypt",
    )


def licence_rows(db: Database) -> int:
    """The rows :func:`reencrypt_licences` scans."""
    return count_rows(db, LicenceRow.__table__)  # type: ignore[arg-type]


def reencrypt_licences(
    db: Database,
    vault: LicenceVault,
    *,
    actor: str,
    batch_size: int,
    progress: Progress | None = None,
) -> list[TableReport]:
    """Move every licence's secrets to ``vault.scheme`` (batches, compare-and-set, each moved
    row verified; :mod:`govtrust.reencryption`)."""
    return [
        _reencrypt_table(
            db,
            licence_table(vault),
            scheme=vault.scheme.value,
            actor=actor,
            batch_size=batch_size,
            progress=progress,
        )
    ]
