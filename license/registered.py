"""The registry's record of one licence version as other packages read it: a value, not a row
(the licence tables are this package's; ``verify`` reads them only through here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from govtrust.errors import NotFound

if TYPE_CHECKING:
    from license.issuance import LicenceService, StoredLicence


@dataclass(frozen=True)
class RegisteredLicence:
    """A registered licence version: its identifier, type, why its status is what it is, and
    the version that replaced it; :meth:`opened` decrypts its secrets when they are needed."""

    identifier: str
    type_code: str
    status_reason: str
    superseded_by: str
    _open: Callable[[], StoredLicence] = field(repr=False, compare=False)

    def opened(self) -> StoredLicence:
        """The version with its signed data, QR payload and documents in clear."""
        return self._open()


def registered(service: LicenceService, identifier: str) -> RegisteredLicence | None:
    """The registered version ``identifier``, or None when there is none (or no identifier)."""
    if not identifier:
        return None
    try:
        row = service.get(identifier)
    except NotFound:
        return None
    return RegisteredLicence(
        row.identifier,
        row.type_code,
        row.status_reason or "",
        row.superseded_by or "",
        lambda: service.opened(row),
    )
