"""What the CA's callers read of a stored certificate: :class:`CertificateRecord`, the
shape of the certificate records the authority returns (``find``, ``get``, ``revoke``, ...).

The certificate table is the CA's; adapters and other packages name this shape, never the ORM
model, so the table can change behind it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class CertificateRecord(Protocol):
    """A certificate the CA issued, as stored: identity, validity, status and its DER."""

    id: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    profile: str
    subject_kind: str
    identity_id: str | None
    seal_id: str | None
    system_id: str | None
    der: bytes
    key_algorithm: str
    key_id: str | None
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    status: str
    revoked_at: datetime | None
    revocation_reason: int | None
    invalidity_date: datetime | None
    status_comment: str | None
    paired_with: str | None  # the KMC pair: the other certificate of a signing/encryption pair
    renewed_from: str | None  # the certificate a renewal replaced
