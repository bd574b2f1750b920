"""SealOfd: put a seal on an OFD document (GB/T 33190) as a GB/T 38540 electronic seal
signature laid out as GM/T 0099 (:mod:`seal.ofd.sign`).

The package is read within limits (:mod:`seal.ofd.package`) and its document model read
(:mod:`seal.ofd.reader`) before anything is authorised; a malformed or oversized package is
refused naming what and where, and nothing is recorded. The signature value is the seal's
SES_Signature (v4) by its SES key — SM2-with-SM3 with an SM3 dataHash for an SM2 seal — over
the exact bytes of the new ``Signature.xml``, with the ``timeStamp`` of our TSA (SM2 for an SM2
seal) over the signature value unless turned off. The picture shows through ``StampAnnot``
elements at a position, an anchor text or as a riding seal; earlier seals stay valid.

Same conditions as SealPdf (an active seal, a current grant for the document kind or the
owner's representative); the use is recorded (action ``seal_ofd``) with the signature's
dataHash, which a verifier reads back from the signature to find who applied it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from govtrust.principal import Principal
from seal import structures
from seal.errors import InvalidSealRequest, SealRuleViolation
from seal.lifecycle import SealService, Use, UseContext
from seal.ofd.package import read_package, write_package
from seal.ofd.reader import OfdContents, read_document
from seal.ofd.sign import OfdSignature, add_signature
from seal.ofd.signatures import Provider
from seal.ofd.stamps import stamp_annots
from seal.placement import Placement
from seal.signing import CaTimeStamper
from seal.types import EventView

MAX_OFD_BYTES = 50 * 1024 * 1024
PROVIDER = Provider(name="govtrust", company="govtrust", version="1")


@dataclass(frozen=True)
class OfdSealRequest:
    """SealOfd's input."""

    seal_id: str
    ofd: bytes
    placement: Placement = None
    timestamp: bool = True
    document_kind: str = ""
    reason: str = ""


@dataclass(frozen=True)
class SealedOfd:
    """The signing step's output: the package, the signature, what its dataHash is."""

    ofd: bytes
    sign_id: int
    signature_file: str
    digest_algorithm: str
    data_hash: bytes
    signing_time: datetime


@dataclass(frozen=True)
class OfdSealResult:
    """SealOfd's output."""

    sealed: SealedOfd
    event: EventView


def read_ofd(data: bytes) -> OfdContents:
    """The OFD document in the untrusted ``data`` (size and package limits applied)."""
    if not data:
        raise InvalidSealRequest.field("ofd", "required")
    if len(data) > MAX_OFD_BYTES:
        raise InvalidSealRequest.field("ofd", f"at most {MAX_OFD_BYTES} bytes")
    return read_document(read_package(data))


class SealOfd:
    """Seals OFD documents with seals of a :class:`SealService`."""

    def __init__(self, service: SealService) -> None:
        self.service = service

    def seal(self, principal: Principal, request: OfdSealRequest) -> OfdSealResult:
        """Seal ``request.ofd``; PermissionDenied / FailedPrecondition with the reason when the
        caller may not use the seal or it is not active; nothing is recorded on a refusal."""
        if len(request.reason) > 500:
            raise InvalidSealRequest.field("reason", "at most 500 characters")
        contents = read_ofd(request.ofd)
        context = self.service.authorise_use(principal, request.seal_id, request.document_kind)
        sealed = self.sign(context, contents, request.placement, timestamp=request.timestamp)
        event = self.service.record_use(
            principal,
            context,
            Use(
                "seal_ofd",
                request.document_kind,
                sealed.digest_algorithm,
                sealed.data_hash,
                request.reason,
                signing_time=sealed.signing_time,
            ),
        )
        return OfdSealResult(sealed, event)

    def reproduce(
        self, principal: Principal, request: OfdSealRequest, audit_seq: int
    ) -> OfdSealResult:
        """Seal ``request.ofd`` again for the use recorded with audit record ``audit_seq`` (a
        call whose answer was lost), bound to that use: the signature's ``SignatureDateTime``
        (and the SES_Signature's time) is the one the use recorded, so ``Signature.xml`` is
        byte for byte the lost one and its dataHash the use's digest — a verifier finds who
        applied it; the signature value and its time-stamp are new. No second use is recorded;
        the remaking is audited. Refused (SealRuleViolation) when the use recorded no signing
        time (recorded before it was) or the document is not the one sealed then."""
        if len(request.reason) > 500:
            raise InvalidSealRequest.field("reason", "at most 500 characters")
        contents = read_ofd(request.ofd)
        recorded = self.service.recorded_use(principal, request.seal_id, audit_seq, "seal_ofd")
        if recorded.signing_time is None:
            raise SealRuleViolation.rule(
                f"seal/{request.seal_id}",
                f"use {recorded.event.sequence} recorded no signing time: it cannot be made again",
            )
        sealed = self.sign(
            recorded.context,
            contents,
            request.placement,
            timestamp=request.timestamp,
            at=recorded.signing_time,
            check=recorded.require_digest,
        )
        self.service.record_reproduction(principal, recorded)
        return OfdSealResult(sealed, recorded.event)

    def sign(
        self,
        context: UseContext,
        contents: OfdContents,
        placement: Placement,
        *,
        timestamp: bool = True,
        at: datetime | None = None,
        check: Callable[[str, bytes], None] | None = None,
    ) -> SealedOfd:
        """The signing step alone (no authorisation, no record); ``at`` the signing time (now,
        to the second, unless given); ``check`` sees the dataHash (algorithm, value) before
        anything is signed."""
        seal = context.seal
        if seal.seal_structure is None:
            raise InvalidSealRequest.field("seal_id", "the seal has no GB/T 38540 structure")
        seal_der = seal.seal_structure
        oid = structures.signature_algorithm_oid(context.ses_scheme)
        digest = structures.data_digest(oid)
        sm2 = context.ses_sm2
        stamper = CaTimeStamper(self.service.authority, sm2=sm2) if timestamp else None
        now = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        hashes: list[bytes] = []

        def sign(signature_xml: bytes, property_info: str) -> bytes:
            data_hash = hashlib.new(digest, signature_xml).digest()
            if check is not None:
                check(digest, data_hash)
            hashes.append(data_hash)
            return structures.build_signature(
                structures.SignatureRequest(seal_der, data_hash, property_info, now),
                self.service.keystore,
                context.ses_key_id,
                context.ses_scheme,
                context.ses_certificate_der,
                timestamp=(lambda value: stamper.token_for(value, digest)) if stamper else None,
            )

        signed = add_signature(
            contents,
            OfdSignature(
                seal_der=seal_der,
                signature_method=oid,
                date_time=now.strftime("%Y%m%d%H%M%SZ"),
                provider=PROVIDER,
                stamps=lambda first: stamp_annots(
                    contents, placement, seal.width_mm, seal.height_mm, first
                ),
                sign=sign,
            ),
        )
        return SealedOfd(
            ofd=write_package(signed.package),
            sign_id=signed.sign_id,
            signature_file=signed.signature_file,
            digest_algorithm=digest,
            data_hash=hashes[0],
            signing_time=now,
        )
