"""Certificate status look-up: the CA's own ``ca_certificates`` row for a fingerprint.

Other packages read a certificate's registry status only through :class:`CertificateStatusLookup`
(the table is the CA's). It runs one fixed point query on a caller-supplied fast reader (the
driver-level :class:`govtrust.fastsql.PointReader`; the CA, below ``idp``, names only the protocol).
:func:`active_service_certificates` finds a system's current certificates with server-side keys.
A caller that also needs the subject's identity passes the identity owner's join fragment
(``idp.identity_status.identity_join``): the look-up stays one round trip while each package's
SQL names only its own tables.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import select

from ca.models import CaCertificate, CaIssuer
from govtrust.db import Database

STATUS_COLUMNS = (
    "issuer",
    "profile",
    "status",
    "revoked_at",
    "revocation_reason",
    "invalidity_date",
    "status_changed_at",
    "identity_id",
    "seal_id",
    "system_id",
)
"""The columns of a status row, in order (a joined fragment's columns follow them)."""


class RowReader(Protocol):
    """A driver-level one-row reader (``?`` placeholders adapted by :meth:`sql`)."""

    def sql(self, text: str) -> str:
        """Adapt ``?`` placeholders to the driver's style."""
        ...

    def fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Run ``sql`` and return its first row."""
        ...


def status_sql(join: tuple[str, str] | None = None) -> str:
    """The status query by ``fingerprint_sha256`` (``?``); ``join`` is another owner's
    ``(columns, LEFT JOIN clause)`` on the certificate's columns, aliased ``c``."""
    columns = ", ".join(f"c.{name}" for name in STATUS_COLUMNS)
    extra, clause = join if join is not None else ("", "")
    if extra:
        columns += ", " + extra
    return f"SELECT {columns} FROM ca_certificates c{clause} WHERE c.fingerprint_sha256 = ?"  # noqa: S608 - fixed fragments, no values


class CertificateStatusLookup:
    """Point reads of the CA's status row for a certificate, read fresh on every call."""

    def __init__(self, reader: RowReader, join: tuple[str, str] | None = None) -> None:
        self._fetchone = reader.fetchone
        self._sql = reader.sql(status_sql(join))

    def row(self, fingerprint: str) -> tuple[Any, ...] | None:
        """The status row (:data:`STATUS_COLUMNS`, then the join's columns) of the certificate
        whose DER has this SHA-256 (lower-case hex); None when the CA did not issue it."""
        return self._fetchone(self._sql, (fingerprint,))


def active_service_certificates(
    db: Database, system_id: str, limit: int = 5
) -> list[CaCertificate]:
    """The newest ``limit`` active service certificates of ``system_id`` whose keys the key
    store holds (newest first; the caller checks their expiry and key)."""
    with db.read() as session:
        return list(
            session.scalars(
                select(CaCertificate)
                .where(
                    CaCertificate.profile == "service",
                    CaCertificate.system_id == system_id,
                    CaCertificate.status == "active",
                    CaCertificate.key_id.is_not(None),
                )
                .order_by(CaCertificate.issued_at.desc())
                .limit(limit)
            )
        )


def certificate_status(db: Database, fingerprint_sha256: str) -> str | None:
    """The registry status (``active``, ``suspended``, ``revoked``) of the certificate we
    issued with this SHA-256 fingerprint (hex); None when we did not issue it."""
    with db.read() as session:
        return session.scalar(
            select(CaCertificate.status).where(
                CaCertificate.fingerprint_sha256 == fingerprint_sha256
            )
        )


def hierarchy_certificates(db: Database) -> tuple[list[bytes], list[bytes]]:
    """The DER certificates of our hierarchy: (roots, issuing CAs), both algorithms' (what a
    login or a validator anchors on and builds through)."""
    with db.read() as session:
        issuers = [(i.role, i.der) for i in session.scalars(select(CaIssuer))]
    return (
        [der for role, der in issuers if role == "root"],
        [der for role, der in issuers if role == "issuing"],
    )
