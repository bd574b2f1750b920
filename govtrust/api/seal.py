"""gRPC adapter of ``govtrust.v1.SealService`` over :class:`seal.lifecycle.SealService`.

Thin by design: each method converts the request, calls the domain with the caller's principal
(``current_principal()``) in the ``run_sync`` pool (sealing is CPU-bound and must not stall the
event loop), and converts the result. Domain errors propagate to the platform interceptor,
which maps them to status codes (FAILED_PRECONDITION for illegal transitions, PERMISSION_DENIED
for a role that may not act, INVALID_ARGUMENT with field violations for bad input).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from govtrust.api.identity import parse_ref
from govtrust.audit import ClaimEffect
from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from govtrust.rpc.answers import acted_on, all_acted_on, rebuilt_from, redone_by, the_effect
from govtrust.rpc.context import current_principal
from govtrust.rpc.convert import time_in, timestamp_pb
from govtrust.rpc.offload import run_sync
from govtrust.v1 import common_pb2, seal_pb2, seal_pb2_grpc
from idp.types import IdentityRef
from seal import images
from seal.lifecycle import Application, Making, SealService
from seal.ofd_seal import OfdSealRequest, OfdSealResult, SealOfd
from seal.pdf import PdfSealRequest, PdfSealResult, SealPdf, design_of
from seal.placement import Anchor, Placement, Position, Riding
from seal.signdata import DataRequest, DataResult, SignData
from seal.types import (
    EventView,
    GrantState,
    GrantView,
    PadesLevel,
    SealKind,
    SealShape,
    SealStatus,
    SealView,
)

if TYPE_CHECKING:
    from govtrust.platform import Platform

_KIND = {
    SealKind.OFFICIAL: common_pb2.SEAL_KIND_OFFICIAL,
    SealKind.FINANCE: common_pb2.SEAL_KIND_FINANCE,
    SealKind.CONTRACT: common_pb2.SEAL_KIND_CONTRACT,
    SealKind.INVOICE: common_pb2.SEAL_KIND_INVOICE,
    SealKind.BUSINESS: common_pb2.SEAL_KIND_BUSINESS,
    SealKind.PERSONAL_NAME: common_pb2.SEAL_KIND_PERSONAL_NAME,
}
_KIND_IN = {v: k for k, v in _KIND.items()}
_STATUS = {s: getattr(common_pb2, f"SEAL_STATUS_{s.name}") for s in SealStatus}
_STATUS_IN = {v: k for k, v in _STATUS.items()}
_SHAPE = {s: getattr(seal_pb2, f"SEAL_SHAPE_{s.name}") for s in SealShape}
_SHAPE_IN = {v: k for k, v in _SHAPE.items()}
_GRANT = {
    GrantState.ACTIVE: common_pb2.GRANT_STATUS_ACTIVE,
    GrantState.NOT_YET_VALID: common_pb2.GRANT_STATUS_NOT_YET_VALID,
    GrantState.EXPIRED: common_pb2.GRANT_STATUS_EXPIRED,
    GrantState.REVOKED: common_pb2.GRANT_STATUS_REVOKED,
}
_ACTION = {
    "apply": seal_pb2.SEAL_ACTION_APPLY,
    "approve": seal_pb2.SEAL_ACTION_APPROVE,
    "reject": seal_pb2.SEAL_ACTION_REJECT,
    "make": seal_pb2.SEAL_ACTION_MAKE,
    "file": seal_pb2.SEAL_ACTION_FILE,
    "issue": seal_pb2.SEAL_ACTION_ISSUE,
    "suspend": seal_pb2.SEAL_ACTION_SUSPEND,
    "resume": seal_pb2.SEAL_ACTION_RESUME,
    "revoke": seal_pb2.SEAL_ACTION_REVOKE,
    "destroy": seal_pb2.SEAL_ACTION_DESTROY,
    "remake": seal_pb2.SEAL_ACTION_REMAKE,
    "grant_use": seal_pb2.SEAL_ACTION_GRANT_USE,
    "revoke_use": seal_pb2.SEAL_ACTION_REVOKE_USE,
    "seal_pdf": seal_pb2.SEAL_ACTION_SEAL_PDF,
    "sign_data": seal_pb2.SEAL_ACTION_SIGN_DATA,
    "seal_ofd": seal_pb2.SEAL_ACTION_SEAL_OFD,
}
_KEY_ALG = {
    "ec-p256": common_pb2.KEY_ALGORITHM_EC_P256,
    "ec-p384": common_pb2.KEY_ALGORITHM_EC_P384,
    "rsa-2048": common_pb2.KEY_ALGORITHM_RSA_2048,
    "rsa-3072": common_pb2.KEY_ALGORITHM_RSA_3072,
    "sm2": common_pb2.KEY_ALGORITHM_SM2,
}
_KEY_ALG_IN = {v: k for k, v in _KEY_ALG.items()}
_LEVEL = {
    PadesLevel.B_B: common_pb2.PADES_LEVEL_B_B,
    PadesLevel.B_T: common_pb2.PADES_LEVEL_B_T,
    PadesLevel.B_LT: common_pb2.PADES_LEVEL_B_LT,
}
_LEVEL_IN = {v: k for k, v in _LEVEL.items()}
_SUSPENSION = {
    seal_pb2.SUSPENSION_CAUSE_LOSS: "loss",
    seal_pb2.SUSPENSION_CAUSE_OWNER_REQUEST: "owner_request",
    seal_pb2.SUSPENSION_CAUSE_SUSPECTED_COMPROMISE: "suspected_compromise",
    seal_pb2.SUSPENSION_CAUSE_ADMINISTRATIVE: "administrative",
}
_REMAKE = {
    seal_pb2.REMAKE_CAUSE_LOSS: "loss",
    seal_pb2.REMAKE_CAUSE_KEY_COMPROMISE: "key_compromise",
    seal_pb2.REMAKE_CAUSE_INFORMATION_CHANGE: "information_change",
}
_DIGEST_NAMES = {
    "sha256": common_pb2.DIGEST_ALGORITHM_SHA256,
    "sha384": common_pb2.DIGEST_ALGORITHM_SHA384,
    "sha512": common_pb2.DIGEST_ALGORITHM_SHA512,
    "sm3": common_pb2.DIGEST_ALGORITHM_SM3,
}
_DIGEST_IN = {v: k for k, v in _DIGEST_NAMES.items()}


_UNSET: Any = 0  # the UNSPECIFIED value of any enum


def _enum(field: str, value: int, mapping: dict[Any, Any], default: Any = None) -> Any:
    if value == 0:
        return default
    if value not in mapping:
        raise InvalidArgument.field(field, f"unknown value {value}")
    return mapping[value]


def _person(
    person_id: str, name: str = "", kind: Any = common_pb2.IDENTITY_KIND_CITIZEN
) -> common_pb2.IdentitySummary | None:
    if not person_id:
        return None
    return common_pb2.IdentitySummary(id=person_id, kind=kind, display_name=name)


def _certificate_pb(der: bytes | None, issuer_ca: str) -> common_pb2.CertificateSummary | None:
    if not der:
        return None
    from asn1crypto import x509

    cert = x509.Certificate.load(der)
    return common_pb2.CertificateSummary(
        subject=cert.subject.human_friendly,
        issuer=cert.issuer.human_friendly,
        serial_number=format(cert.serial_number, "x"),
        not_before=timestamp_pb(cert.not_valid_before),
        not_after=timestamp_pb(cert.not_valid_after),
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        profile=common_pb2.CERTIFICATE_PROFILE_SEAL,
        issuer_ca=issuer_ca,
        der=der,
    )


def seal_pb(seal: SealView) -> seal_pb2.Seal:
    """The protobuf of a seal."""
    certificate = _certificate_pb(
        seal.certificate_der, "sm2-seal" if seal.key_algorithm == "sm2" else "seal"
    )
    owner_kind = (
        common_pb2.IDENTITY_KIND_LEGAL_PERSON
        if seal.owner_uscc
        else common_pb2.IDENTITY_KIND_CITIZEN
    )
    return seal_pb2.Seal(
        id=seal.id,
        owner=_person(seal.owner_id, seal.owner_name, owner_kind),
        kind=_KIND[seal.kind],
        name=seal.name,
        business_number=seal.business_number,
        taxpayer_number=seal.taxpayer_number,
        named_person=_person(seal.named_person_id, seal.named_person_name),
        status=_STATUS[seal.status],
        status_reason=seal.status_reason,
        shape=_SHAPE[seal.shape],
        width_mm=seal.width_mm,
        height_mm=seal.height_mm,
        key_algorithm=_KEY_ALG.get(seal.key_algorithm, _UNSET),
        certificate=certificate,
        pdf_certificate=_certificate_pb(seal.pdf_certificate_der, "seal"),
        seal_structure=seal.seal_structure or b"",
        filing_number=seal.filing_number,
        valid_from=timestamp_pb(seal.valid_from),
        valid_until=timestamp_pb(seal.valid_until),
        applicant=_person(seal.applicant_id),
        applied_at=timestamp_pb(seal.applied_at),
        reviewed_at=timestamp_pb(seal.reviewed_at),
        made_at=timestamp_pb(seal.made_at),
        filed_at=timestamp_pb(seal.filed_at),
        issued_at=timestamp_pb(seal.issued_at),
        revoked_at=timestamp_pb(seal.revoked_at),
        destroyed_at=timestamp_pb(seal.destroyed_at),
        replaces_seal_id=seal.replaces_seal_id,
        replaced_by_seal_id=seal.replaced_by_seal_id,
        updated_at=timestamp_pb(seal.updated_at),
    )


def grant_pb(grant: GrantView) -> seal_pb2.SealGrant:
    """The protobuf of a use grant."""
    return seal_pb2.SealGrant(
        id=grant.id,
        seal_id=grant.seal_id,
        grantee=_person(grant.grantee_id),
        document_kinds=list(grant.document_kinds),
        valid_from=timestamp_pb(grant.valid_from),
        valid_until=timestamp_pb(grant.valid_until),
        status=_GRANT[grant.state],
        granted_by=_person(grant.granted_by),
        granted_at=timestamp_pb(grant.granted_at),
        revoked_by=_person(grant.revoked_by),
        revoked_at=timestamp_pb(grant.revoked_at),
        revoke_reason=grant.revoke_reason,
    )


def event_pb(event: EventView) -> seal_pb2.SealEvent:
    """The protobuf of a history event."""
    digest = None
    if event.digest:
        digest = common_pb2.Digest(
            algorithm=_DIGEST_NAMES.get(event.digest_algorithm, _UNSET), value=event.digest
        )
    return seal_pb2.SealEvent(
        sequence=event.sequence,
        action=_ACTION.get(event.action, _UNSET),
        from_status=_STATUS[SealStatus(event.from_status)] if event.from_status else _UNSET,
        to_status=_STATUS[SealStatus(event.to_status)] if event.to_status else _UNSET,
        actor=_person(event.actor_id),
        principal=event.principal,
        role=event.role,
        reason=event.reason,
        occurred_at=timestamp_pb(event.occurred_at),
        document_digest=digest,
        document_kind=event.document_kind,
        related_id=event.related_id,
        audit_record_id=str(event.audit_seq) if event.audit_seq else "",
    )


def _placement(request: seal_pb2.SealPdfRequest | seal_pb2.SealOfdRequest) -> Placement:
    """The placement a SealPdf or SealOfd request asks for (None: no visible seal)."""
    placement: Placement = None
    which = request.placement.WhichOneof("placement") if request.HasField("placement") else None
    if which == "position":
        p = request.placement.position
        placement = Position(p.page, p.x_mm, p.y_mm)
    elif which == "anchor":
        a = request.placement.anchor
        placement = Anchor(a.text, a.occurrence, a.offset_x_mm, a.offset_y_mm)
    elif which == "riding":
        r = request.placement.riding
        placement = Riding(
            r.first_page,
            r.last_page,
            "left" if r.edge == seal_pb2.PAGE_EDGE_LEFT else "right",
            r.y_mm,
        )
    return placement


def _ref(message: common_pb2.IdentityRef) -> IdentityRef:
    return parse_ref(message)


def _seal_after(response: Callable[..., Any]) -> Callable[..., Any]:
    """The rebuilder of a transition's lost answer: ``response`` with the seal it moved, as the
    seal stands now (None unless the call's seal records name exactly one seal)."""

    def rebuild(servicer: SealServicer, effects: Sequence[ClaimEffect]) -> Any:
        seal_id = acted_on(effects, "seal.", "seal/")
        return None if seal_id is None else response(seal=seal_pb(servicer.service.get(seal_id)))

    return rebuild


def _pdf_request(request: seal_pb2.SealPdfRequest) -> PdfSealRequest:
    placement = _placement(request)
    level = _enum("level", request.level, _LEVEL_IN, PadesLevel.B_T)
    if request.level == common_pb2.PADES_LEVEL_B_LTA:
        raise InvalidArgument.field("level", "B-LTA is not offered; use B-LT")
    return PdfSealRequest(
        seal_id=request.seal_id,
        pdf=request.pdf,
        placement=placement,
        level=level,
        document_kind=request.document_kind,
        reason=request.reason,
        location=request.location,
        field_name=request.field_name,
    )


def _pdf_response(result: PdfSealResult, _request: Any = None) -> seal_pb2.SealPdfResponse:
    return seal_pb2.SealPdfResponse(
        sealed_pdf=result.sealed_pdf,
        field_name=result.field_name,
        document_digest=common_pb2.Digest(
            algorithm=common_pb2.DIGEST_ALGORITHM_SHA256, value=result.document_sha256
        ),
        signing_time=timestamp_pb(result.signing_time),
        level=_LEVEL[result.level],
        event=event_pb(result.event),
    )


def _ofd_request(request: seal_pb2.SealOfdRequest) -> OfdSealRequest:
    return OfdSealRequest(
        seal_id=request.seal_id,
        ofd=request.ofd,
        placement=_placement(request),
        timestamp=not request.without_timestamp,
        document_kind=request.document_kind,
        reason=request.reason,
    )


def _ofd_response(result: OfdSealResult, _request: Any = None) -> seal_pb2.SealOfdResponse:
    sealed = result.sealed
    return seal_pb2.SealOfdResponse(
        sealed_ofd=sealed.ofd,
        signature_id=sealed.sign_id,
        signature_file="/" + sealed.signature_file,
        data_hash=common_pb2.Digest(
            algorithm=_DIGEST_NAMES[sealed.digest_algorithm], value=sealed.data_hash
        ),
        signing_time=timestamp_pb(sealed.signing_time),
        event=event_pb(result.event),
    )


def _signature_format(request: seal_pb2.SignDataRequest) -> Any:
    fmt = request.format or common_pb2.SIGNATURE_FORMAT_CMS
    if fmt not in (common_pb2.SIGNATURE_FORMAT_CMS, common_pb2.SIGNATURE_FORMAT_SES_SIGNATURE):
        raise InvalidArgument.field("format", "CMS or SES_SIGNATURE")
    return fmt


def _data_request(request: seal_pb2.SignDataRequest) -> DataRequest:
    which = request.WhichOneof("content")
    if which is None:
        raise InvalidArgument.field("content", "data or digest is required")
    fmt = _signature_format(request)
    digest_algorithm = "sha256"
    if which == "digest":
        digest_algorithm = _enum("digest.algorithm", request.digest.algorithm, _DIGEST_IN, "sha256")
    return DataRequest(
        seal_id=request.seal_id,
        data=request.data if which == "data" else None,
        digest=request.digest.value if which == "digest" else None,
        digest_algorithm=digest_algorithm,
        ses=fmt == common_pb2.SIGNATURE_FORMAT_SES_SIGNATURE,
        timestamp=request.timestamp,
        document_kind=request.document_kind,
        property_info=request.property_info,
    )


def _data_response(
    result: DataResult, request: seal_pb2.SignDataRequest
) -> seal_pb2.SignDataResponse:
    return seal_pb2.SignDataResponse(
        signature=result.signature,
        format=_signature_format(request),
        data_digest=common_pb2.Digest(
            algorithm=_DIGEST_NAMES[result.digest_algorithm], value=result.digest
        ),
        signing_time=timestamp_pb(result.signing_time),
        certificate=seal_pb(result.seal).certificate,
        event=event_pb(result.event),
    )


def _use_redone(
    action: str,
    reproduce: Callable[[SealServicer], Callable[[Principal, Any, int], Any]],
    domain_request: Callable[[Any], Any],
    response: Callable[[Any, Any], Any],
) -> Callable[..., Any]:
    """The redo of a sealing call's lost answer: the document or signature made again by
    ``reproduce`` from the retry's request, bound to the ``seal.<action>`` use the lost call
    recorded (None unless it recorded exactly one)."""

    def redo(servicer: SealServicer, request: Any, effects: Sequence[ClaimEffect]) -> Any:
        use = the_effect(effects, f"seal.{action}", "seal/")
        if use is None or use.target != f"seal/{request.seal_id}":
            return None
        result = reproduce(servicer)(current_principal(), domain_request(request), use.seq)
        return response(result, request)

    return redo


def _grant_after(action: str, response: Callable[..., Any]) -> Callable[..., Any]:
    """The rebuilder of a use grant change's lost answer: ``response`` with the grant it made
    or revoked (named by the seal event recorded with the call's one ``action`` record), as the
    grant stands now."""

    def rebuild(servicer: SealServicer, effects: Sequence[ClaimEffect]) -> Any:
        effect = the_effect(effects, action, "seal/")
        if effect is None:
            return None
        seal_id = effect.target.removeprefix("seal/")
        return response(grant=grant_pb(servicer.service.grant_recorded(seal_id, effect.seq)))

    return rebuild


def _remade(
    servicer: SealServicer, effects: Sequence[ClaimEffect]
) -> seal_pb2.RemakeSealResponse | None:
    """A lost RemakeSeal answer: the two seals its ``seal.remake`` records name — the new one
    is the one replacing the other — as they stand now (None unless exactly such a pair)."""
    ids = all_acted_on(effects, "seal.remake", "seal/")
    if len(ids) != 2:
        return None
    first, second = (servicer.service.get(i) for i in sorted(ids))
    for old, new in ((first, second), (second, first)):
        if new.replaces_seal_id == old.id and old.replaced_by_seal_id == new.id:
            return seal_pb2.RemakeSealResponse(old_seal=seal_pb(old), new_seal=seal_pb(new))
    return None


class SealServicer(seal_pb2_grpc.SealServiceServicer):
    """``govtrust.v1.SealService`` over a :class:`SealService` (SealPdf, SealOfd, SignData)."""

    def __init__(self, service: SealService, pdf: SealPdf | None = None) -> None:
        self.service = service
        self.pdf = pdf or SealPdf(service)
        self.ofd = SealOfd(service)
        self.data = SignData(service)

    @rebuilt_from(_seal_after(seal_pb2.ApplySealResponse))
    async def ApplySeal(
        self,
        request: seal_pb2.ApplySealRequest,
        context: Any,
    ) -> seal_pb2.ApplySealResponse:
        kind = _enum("kind", request.kind, _KIND_IN)
        if kind is None:
            raise InvalidArgument.field("kind", "required")
        application = Application(
            owner=_ref(request.owner),
            kind=kind,
            name=request.name,
            business_number=request.business_number,
            taxpayer_number=request.taxpayer_number,
            named_person=_ref(request.named_person) if request.HasField("named_person") else None,
            valid_until=time_in(request, "valid_until"),
            reason=request.reason,
            key_algorithm=_enum("key_algorithm", request.key_algorithm, _KEY_ALG_IN, ""),
        )
        seal = await run_sync(self.service.apply, current_principal(), application)
        return seal_pb2.ApplySealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.ReviewSealResponse))
    async def ReviewSeal(
        self,
        request: seal_pb2.ReviewSealRequest,
        context: Any,
    ) -> seal_pb2.ReviewSealResponse:
        if request.decision not in (
            seal_pb2.REVIEW_DECISION_APPROVE,
            seal_pb2.REVIEW_DECISION_REJECT,
        ):
            raise InvalidArgument.field("decision", "approve or reject")
        approve = request.decision == seal_pb2.REVIEW_DECISION_APPROVE
        seal = await run_sync(
            self.service.review, current_principal(), request.seal_id, approve, request.reason
        )
        return seal_pb2.ReviewSealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.MakeSealResponse))
    async def MakeSeal(
        self,
        request: seal_pb2.MakeSealRequest,
        context: Any,
    ) -> seal_pb2.MakeSealResponse:
        making = Making(
            key_algorithm=_enum("key_algorithm", request.key_algorithm, _KEY_ALG_IN, ""),
            shape=_enum("shape", request.shape, _SHAPE_IN),
            width_mm=request.width_mm,
            height_mm=request.height_mm,
            reason=request.reason,
        )
        seal = await run_sync(self.service.make, current_principal(), request.seal_id, making)
        return seal_pb2.MakeSealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.FileSealResponse))
    async def FileSeal(
        self,
        request: seal_pb2.FileSealRequest,
        context: Any,
    ) -> seal_pb2.FileSealResponse:
        seal = await run_sync(
            self.service.file,
            current_principal(),
            request.seal_id,
            request.filing_number,
            request.reason,
        )
        return seal_pb2.FileSealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.IssueSealResponse))
    async def IssueSeal(
        self,
        request: seal_pb2.IssueSealRequest,
        context: Any,
    ) -> seal_pb2.IssueSealResponse:
        seal = await run_sync(
            self.service.issue, current_principal(), request.seal_id, request.reason
        )
        return seal_pb2.IssueSealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.SuspendSealResponse))
    async def SuspendSeal(
        self,
        request: seal_pb2.SuspendSealRequest,
        context: Any,
    ) -> seal_pb2.SuspendSealResponse:
        cause = _enum("cause", request.cause, _SUSPENSION, "owner_request")
        seal = await run_sync(
            self.service.suspend, current_principal(), request.seal_id, cause, request.reason
        )
        return seal_pb2.SuspendSealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.ResumeSealResponse))
    async def ResumeSeal(
        self,
        request: seal_pb2.ResumeSealRequest,
        context: Any,
    ) -> seal_pb2.ResumeSealResponse:
        seal = await run_sync(
            self.service.resume, current_principal(), request.seal_id, request.reason
        )
        return seal_pb2.ResumeSealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.RevokeSealResponse))
    async def RevokeSeal(
        self,
        request: seal_pb2.RevokeSealRequest,
        context: Any,
    ) -> seal_pb2.RevokeSealResponse:
        code = request.certificate_reason or 5
        if code in (6, 8):
            raise InvalidArgument.field("certificate_reason", "not a revocation reason")
        seal = await run_sync(
            self.service.revoke, current_principal(), request.seal_id, request.reason, code
        )
        return seal_pb2.RevokeSealResponse(seal=seal_pb(seal))

    @rebuilt_from(_seal_after(seal_pb2.DestroySealResponse))
    async def DestroySeal(
        self,
        request: seal_pb2.DestroySealRequest,
        context: Any,
    ) -> seal_pb2.DestroySealResponse:
        seal = await run_sync(
            self.service.destroy, current_principal(), request.seal_id, request.reason
        )
        return seal_pb2.DestroySealResponse(seal=seal_pb(seal))

    @rebuilt_from(_remade)
    async def RemakeSeal(
        self,
        request: seal_pb2.RemakeSealRequest,
        context: Any,
    ) -> seal_pb2.RemakeSealResponse:
        cause = _enum("cause", request.cause, _REMAKE, "loss")
        algorithm = _enum("key_algorithm", request.key_algorithm, _KEY_ALG_IN, "")
        old, new = await run_sync(
            lambda: self.service.remake(
                current_principal(),
                request.seal_id,
                cause,
                request.reason,
                key_algorithm=algorithm,
                name=request.name,
            )
        )
        return seal_pb2.RemakeSealResponse(old_seal=seal_pb(old), new_seal=seal_pb(new))

    @rebuilt_from(_grant_after("seal.grant_use", seal_pb2.GrantSealUseResponse))
    async def GrantSealUse(
        self,
        request: seal_pb2.GrantSealUseRequest,
        context: Any,
    ) -> seal_pb2.GrantSealUseResponse:
        grant = await run_sync(
            self.service.grant_use,
            current_principal(),
            request.seal_id,
            _ref(request.grantee),
            list(request.document_kinds),
            time_in(request, "valid_from"),
            time_in(request, "valid_until"),
        )
        return seal_pb2.GrantSealUseResponse(grant=grant_pb(grant))

    @rebuilt_from(_grant_after("seal.revoke_use", seal_pb2.RevokeSealUseResponse))
    async def RevokeSealUse(
        self,
        request: seal_pb2.RevokeSealUseRequest,
        context: Any,
    ) -> seal_pb2.RevokeSealUseResponse:
        grant = await run_sync(
            self.service.revoke_use, current_principal(), request.grant_id, request.reason
        )
        return seal_pb2.RevokeSealUseResponse(grant=grant_pb(grant))

    async def ListSealGrants(
        self,
        request: seal_pb2.ListSealGrantsRequest,
        context: Any,
    ) -> seal_pb2.ListSealGrantsResponse:
        grantee = _ref(request.grantee) if request.HasField("grantee") else None
        grants, token = await run_sync(
            lambda: self.service.list_grants(
                current_principal(),
                seal_id=request.seal_id,
                grantee=grantee,
                include_inactive=request.include_inactive,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        )
        return seal_pb2.ListSealGrantsResponse(
            grants=[grant_pb(g) for g in grants], next_page_token=token
        )

    async def GetSeal(
        self,
        request: seal_pb2.GetSealRequest,
        context: Any,
    ) -> seal_pb2.GetSealResponse:
        current_principal()
        seal = await run_sync(self.service.get, request.seal_id)
        return seal_pb2.GetSealResponse(seal=seal_pb(seal))

    async def ListSeals(
        self,
        request: seal_pb2.ListSealsRequest,
        context: Any,
    ) -> seal_pb2.ListSealsResponse:
        current_principal()
        owner = _ref(request.owner) if request.HasField("owner") else None
        kind = _enum("kind", request.kind, _KIND_IN)
        statuses = [_enum("statuses", s, _STATUS_IN) for s in request.statuses]
        seals, token = await run_sync(
            lambda: self.service.list_seals(
                owner=owner,
                kind=kind,
                statuses=statuses,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        )
        return seal_pb2.ListSealsResponse(seals=[seal_pb(s) for s in seals], next_page_token=token)

    async def GetSealHistory(
        self,
        request: seal_pb2.GetSealHistoryRequest,
        context: Any,
    ) -> seal_pb2.GetSealHistoryResponse:
        current_principal()
        events, token = await run_sync(
            lambda: self.service.history(
                request.seal_id,
                include_uses=request.include_uses,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        )
        return seal_pb2.GetSealHistoryResponse(
            events=[event_pb(e) for e in events], next_page_token=token
        )

    async def GetSealImage(
        self,
        request: seal_pb2.GetSealImageRequest,
        context: Any,
    ) -> seal_pb2.GetSealImageResponse:
        current_principal()
        seal = await run_sync(self.service.get, request.seal_id)
        if seal.status in (SealStatus.APPLIED, SealStatus.APPROVED, SealStatus.REJECTED):
            from seal.errors import SealNotUsable

            raise SealNotUsable.because(seal.id, "the seal has not been made")
        design = design_of(seal)
        if request.format == seal_pb2.IMAGE_FORMAT_SVG:
            data, media = await run_sync(images.render_svg, design), "image/svg+xml"
        else:
            data = await run_sync(images.render_png, design, request.dpi or 300)
            media = "image/png"
        return seal_pb2.GetSealImageResponse(
            image=data, media_type=media, width_mm=seal.width_mm, height_mm=seal.height_mm
        )

    @redone_by(_use_redone("seal_pdf", lambda s: s.pdf.reproduce, _pdf_request, _pdf_response))
    async def SealPdf(
        self,
        request: seal_pb2.SealPdfRequest,
        context: Any,
    ) -> seal_pb2.SealPdfResponse:
        result = await run_sync(self.pdf.seal, current_principal(), _pdf_request(request))
        return _pdf_response(result)

    @redone_by(_use_redone("seal_ofd", lambda s: s.ofd.reproduce, _ofd_request, _ofd_response))
    async def SealOfd(
        self,
        request: seal_pb2.SealOfdRequest,
        context: Any,
    ) -> seal_pb2.SealOfdResponse:
        result = await run_sync(self.ofd.seal, current_principal(), _ofd_request(request))
        return _ofd_response(result)

    @redone_by(_use_redone("sign_data", lambda s: s.data.reproduce, _data_request, _data_response))
    async def SignData(
        self,
        request: seal_pb2.SignDataRequest,
        context: Any,
    ) -> seal_pb2.SignDataResponse:
        data_request = _data_request(request)
        result = await run_sync(self.data.sign, current_principal(), data_request)
        return _data_response(result, request)


def servicer(platform: Platform) -> seal_pb2_grpc.SealServiceServicer:
    """The SealService servicer for a platform (the seal runtime is built once per process)."""
    from seal.runtime import runtime_for

    runtime = runtime_for(platform)
    return SealServicer(runtime.service, runtime.pdf)
