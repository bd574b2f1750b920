"""Why a licence (signed data, QR payload, status list) did not verify."""

from __future__ import annotations

from enum import StrEnum

from govtrust.errors import GovtrustError


class Reason(StrEnum):
    """Machine-readable reasons for a failed licence verification."""

    MALFORMED = "MALFORMED"
    UNSUPPORTED_ALGORITHM = "UNSUPPORTED_ALGORITHM"
    MISSING_CHAIN = "MISSING_CHAIN"
    UNTRUSTED_CHAIN = "UNTRUSTED_CHAIN"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    CERTIFICATE_EXPIRED = "CERTIFICATE_EXPIRED"
    WRONG_CERTIFICATE = "WRONG_CERTIFICATE"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    ISSUER_MISMATCH = "ISSUER_MISMATCH"
    STALE_STATUS_LIST = "STALE_STATUS_LIST"


class LicenceVerificationFailed(GovtrustError):
    """A licence artefact did not verify; ``reason`` says why (see :class:`Reason`)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
