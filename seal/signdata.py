"""SignData: a detached signature over bytes (or their digest) with a seal, for business systems
that seal data rather than PDFs — CMS SignedData (optionally with an RFC 3161 signature
time-stamp) or the GB/T 38540 SES_Signature (optionally with ``timeStamp``).

Same conditions and record as SealPdf: an active seal, a current grant or the owner's
representative, and a history event with the data's digest.

An SM2 seal's SES_Signature is SM2-with-SM3 by its SM2 key with an SM3 dataHash, and its
``timeStamp`` is a token of our SM2 TSA over the signature value (SM3 imprint); a digest sent
for it must be SM3. CMS SignedData is signed with the seal's P-256 key (PAdES/CMS validators
cannot check SM2).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from asn1crypto import cms

from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from seal import structures
from seal.lifecycle import SealService, Use, UseContext
from seal.signing import CaTimeStamper, SealKey, signer_for
from seal.types import EventView, SealView

MAX_DATA_BYTES = 64 * 1024 * 1024
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32}


@dataclass(frozen=True)
class DataRequest:
    """SignData's input: exactly one of ``data`` and ``digest``."""

    seal_id: str
    data: bytes | None = None
    digest: bytes | None = None
    digest_algorithm: str = "sha256"
    ses: bool = False
    timestamp: bool = False
    document_kind: str = ""
    property_info: str = ""


@dataclass(frozen=True)
class DataResult:
    """SignData's output."""

    signature: bytes
    digest_algorithm: str
    digest: bytes
    signing_time: datetime
    seal: SealView
    event: EventView


class SignData:
    """Signs data with seals of a :class:`SealService`."""

    def __init__(self, service: SealService) -> None:
        self.service = service

    def sign(self, principal: Principal, request: DataRequest) -> DataResult:
        """A detached CMS or SES_Signature; the use is recorded with the digest."""
        self._check(request)
        context = self.service.authorise_use(principal, request.seal_id, request.document_kind)
        signature, algorithm, digest, now = self._signature(context, request)
        event = self.service.record_use(
            principal, context, Use("sign_data", request.document_kind, algorithm, digest)
        )
        return DataResult(signature, algorithm, digest, now, context.seal, event)

    def reproduce(self, principal: Principal, request: DataRequest, audit_seq: int) -> DataResult:
        """The signature again for the use recorded with audit record ``audit_seq`` (a call
        whose answer was lost), bound to that use (no second use is recorded; the remaking is
        audited): over the same digest, with a new signing time and time-stamp. Refused like
        :meth:`sign` when the caller may no longer use the seal, and with SealRuleViolation
        when the data is not what that use recorded."""
        self._check(request)
        recorded = self.service.recorded_use(principal, request.seal_id, audit_seq, "sign_data")
        context = recorded.context
        signature, algorithm, digest, now = self._signature(
            context, request, recorded.require_digest
        )
        self.service.record_reproduction(principal, recorded)
        return DataResult(signature, algorithm, digest, now, context.seal, recorded.event)

    def _signature(
        self,
        context: UseContext,
        request: DataRequest,
        check: Callable[[str, bytes], None] = lambda _algorithm, _digest: None,
    ) -> tuple[bytes, str, bytes, datetime]:
        """(signature, digest algorithm, digest, signing time); ``check`` sees the digest
        before anything is signed."""
        key = SealKey(
            context.key_id, context.certificate_der, tuple(self.service.authority.chain())
        )
        now = datetime.now(UTC)
        if request.ses:
            # the SES dataHash is the seal's signature algorithm's digest: SM3 under SM2
            wanted = "sm3" if context.ses_sm2 else "sha256"
            given = request.digest_algorithm
            if given != wanted and (request.digest is not None or given not in ("sha256", "sm3")):
                raise InvalidArgument.field(
                    "digest.algorithm",
                    f"this seal's SES_Signature is {context.ses_scheme.value}: its dataHash is "
                    f"{wanted.upper()}, not {given.upper()}",
                )
            algorithm, digest = self._digest(replace(request, digest_algorithm=wanted))
            check(algorithm, digest)
            sm2 = context.ses_sm2
            stamper = CaTimeStamper(self.service.authority, sm2=sm2)
            assert context.seal.seal_structure is not None
            signature = structures.build_signature(
                structures.SignatureRequest(
                    context.seal.seal_structure, digest, request.property_info, now
                ),
                self.service.keystore,
                context.ses_key_id,
                context.ses_scheme,
                context.ses_certificate_der,
                timestamp=(lambda value: stamper.token_for(value, "sm3" if sm2 else "sha256"))
                if request.timestamp
                else None,
            )
        else:
            algorithm, digest = self._digest(request)
            if algorithm == "sm3":
                raise InvalidArgument.field(
                    "digest.algorithm", "CMS SignedData uses sha256, sha384 or sha512"
                )
            check(algorithm, digest)
            signer = signer_for(self.service.keystore, key)
            timestamper = CaTimeStamper(self.service.authority) if request.timestamp else None
            content: cms.ContentInfo = asyncio.run(
                signer.async_sign(digest, algorithm, timestamper=timestamper)
            )
            signature = content.dump()
        return signature, algorithm, digest, now

    @staticmethod
    def _check(request: DataRequest) -> None:
        if (request.data is None) == (request.digest is None):
            raise InvalidArgument.field("content", "exactly one of data and digest")
        if request.property_info and (
            not request.property_info.isascii() or len(request.property_info) > 256
        ):
            raise InvalidArgument.field("property_info", "at most 256 ASCII characters")
        if request.digest_algorithm not in _DIGEST_SIZES:
            raise InvalidArgument.field("digest.algorithm", "sha256, sha384, sha512 or sm3")
        if request.data is not None and len(request.data) > MAX_DATA_BYTES:
            raise InvalidArgument.field("data", "too large; send its digest instead")

    @staticmethod
    def _digest(request: DataRequest) -> tuple[str, bytes]:
        algorithm = request.digest_algorithm
        if request.data is not None:
            if len(request.data) > MAX_DATA_BYTES:
                raise InvalidArgument.field("data", "too large; send its digest instead")
            return algorithm, hashlib.new(algorithm, request.data).digest()
        assert request.digest is not None
        if len(request.digest) != _DIGEST_SIZES[algorithm]:
            raise InvalidArgument.field(
                "digest.value", f"a {algorithm} digest has {_DIGEST_SIZES[algorithm]} bytes"
            )
        return algorithm, request.digest
