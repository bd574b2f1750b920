"""SignData: a detached signature over bytes (or their digest) with a seal, for business systems
that seal data rather than PDFs — CMS SignedData (optionally with an RFC 3161 signature
time-stamp) or the GB/T 38540 SES_Signature (optionally with ``timeStamp``).

Same conditions and record as SealPdf: an active seal, a current grant or the owner's
representative, and a history event with the data's digest.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import cms

from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from seal import structures
from seal.lifecycle import SealService, Use
from seal.signing import CaTimeStamper, SealKey, signer_for
from seal.types import EventView, SealView

MAX_DATA_BYTES = 64 * 1024 * 1024
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


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
        algorithm, digest = self._digest(request)
        context = self.service.authorise_use(principal, request.seal_id, request.document_kind)
        key = SealKey(
            context.key_id, context.certificate_der, tuple(self.service.authority.chain())
        )
        now = datetime.now(UTC)
        if request.ses:
            if algorithm != "sha256":
                raise InvalidArgument.field("digest.algorithm", "SES_Signature uses SHA-256 here")
            stamper = CaTimeStamper(self.service.authority)
            assert context.seal.seal_structure is not None
            signature = structures.build_signature(
                structures.SignatureRequest(
                    context.seal.seal_structure, digest, request.property_info, now
                ),
                self.service.keystore,
                context.key_id,
                context.scheme,
                context.certificate_der,
                timestamp=stamper.token_for if request.timestamp else None,
            )
        else:
            signer = signer_for(self.service.keystore, key)
            timestamper = CaTimeStamper(self.service.authority) if request.timestamp else None
            content: cms.ContentInfo = asyncio.run(
                signer.async_sign(digest, algorithm, timestamper=timestamper)
            )
            signature = content.dump()
        event = self.service.record_use(
            principal, context, Use("sign_data", request.document_kind, algorithm, digest)
        )
        return DataResult(signature, algorithm, digest, now, context.seal, event)

    @staticmethod
    def _digest(request: DataRequest) -> tuple[str, bytes]:
        if (request.data is None) == (request.digest is None):
            raise InvalidArgument.field("content", "exactly one of data and digest")
        if request.property_info and (
            not request.property_info.isascii() or len(request.property_info) > 256
        ):
            raise InvalidArgument.field("property_info", "at most 256 ASCII characters")
        algorithm = request.digest_algorithm
        if algorithm not in _DIGEST_SIZES:
            raise InvalidArgument.field("digest.algorithm", "sha256, sha384 or sha512")
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
