"""Errors of the seal area; each subclasses the platform error the adapters map to a status."""

from __future__ import annotations

from govtrust.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
)


class SealNotFound(NotFound):
    """No seal (or grant) with that id."""


class InvalidSealRequest(InvalidArgument):
    """A seal request is malformed (bad kind, name, PDF, placement …)."""


class IllegalTransition(FailedPrecondition):
    """The seal's state does not allow the operation; nothing was changed."""

    @classmethod
    def of(cls, seal_id: str, operation: str, status: str) -> IllegalTransition:
        """The error for ``operation`` on a seal in ``status``."""
        return cls(
            f"cannot {operation} a seal that is {status}",
            [
                PreconditionViolation(
                    "STATE", f"seal/{seal_id}", f"{operation} not allowed from {status}"
                )
            ],
        )


class SealRuleViolation(FailedPrecondition):
    """A seal rule forbids the operation (one official seal per owner, inactive owner …)."""

    @classmethod
    def rule(cls, subject: str, description: str) -> SealRuleViolation:
        """The error for one violated rule."""
        return cls(description, [PreconditionViolation("RULE", subject, description)])


class SealNotUsable(FailedPrecondition):
    """The seal cannot seal now (not active, certificate not good)."""

    @classmethod
    def because(cls, seal_id: str, description: str) -> SealNotUsable:
        """The error naming why ``seal_id`` cannot be used."""
        return cls(description, [PreconditionViolation("STATE", f"seal/{seal_id}", description)])


class SealUseDenied(PermissionDenied):
    """The caller holds no current grant for the seal and is not the owner's representative."""


class SealStructureError(InvalidArgument):
    """A GB/T 38540 structure does not parse or its signature does not verify."""

    @classmethod
    def bad(cls, description: str) -> SealStructureError:
        """The error for one defect of a structure."""
        return cls.field("seal_structure", description)  # type: ignore[return-value]


class DataHashMismatch(SealStructureError):
    """An SES_Signature's dataHash is not the digest of its signature algorithm (e.g. a SHA-256
    dataHash under SM2-with-SM3, which needs SM3)."""

    @classmethod
    def of(cls, description: str) -> DataHashMismatch:
        """The error naming the two algorithms."""
        return cls.field("data_hash", description)  # type: ignore[return-value]


class MakerCertificateTooShort(FailedPrecondition):
    """The seal would outlive the seal maker's certificate (GB/T 38540: the maker's signature
    over the SESeal must be verifiable for the seal's whole validity); nothing was changed."""

    @classmethod
    def of(cls, seal_id: str, seal_end: str, maker_end: str) -> MakerCertificateTooShort:
        """The error for a seal valid until ``seal_end`` and a maker certificate ending sooner."""
        description = (
            f"the seal would be valid until {seal_end} but the seal maker's certificate ends "
            f"{maker_end}"
        )
        return cls(
            description,
            [PreconditionViolation("MAKER_CERTIFICATE", f"seal/{seal_id}", description)],
        )


class OfdMalformed(InvalidArgument):
    """An OFD package is not a valid, safe OFD: not a zip, a bad entry name, unsafe XML, a
    reference to a missing file or outside the package …; the message names what and where."""

    @classmethod
    def at(cls, where: str, description: str) -> OfdMalformed:
        """The error for one defect found in ``where`` (a file of the package, or ``package``)."""
        detail = f"{where}: {description}"
        return cls(f"ofd: {detail}", [FieldViolation("ofd", detail)])


class OfdTooLarge(ResourceExhausted):
    """An OFD package holds more than a limit allows (entries, bytes, ratio, pages); reading
    stopped there (see :class:`seal.ofd.package.PackageLimits`)."""

    def __init__(self, limit: str, where: str, count: int, allowed: int) -> None:
        super().__init__(
            f"ofd: {where}: {limit} is at least {count}, more than the limit of {allowed}"
        )
        self.limit = limit
        self.where = where
        self.count = count
        self.allowed = allowed
