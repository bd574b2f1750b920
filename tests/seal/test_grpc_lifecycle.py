"""The whole seal lifecycle over gRPC: every legal step, every illegal transition refused with
FAILED_PRECONDITION and nothing changed, and roles that may not act refused."""

from __future__ import annotations

import grpc

from govtrust.audit import verify_chain
from govtrust.v1 import common_pb2, seal_pb2
from tests.seal.conftest import FILING, MAKER, NOBODY, REVIEWER, GrpcHandle, World

OPERATIONS = {
    "review": (
        "ReviewSeal",
        lambda sid: seal_pb2.ReviewSealRequest(
            seal_id=sid, decision=seal_pb2.REVIEW_DECISION_APPROVE, reason="ok"
        ),
        REVIEWER,
    ),
    "make": ("MakeSeal", lambda sid: seal_pb2.MakeSealRequest(seal_id=sid), MAKER),
    "file": ("FileSeal", lambda sid: seal_pb2.FileSealRequest(seal_id=sid), FILING),
    "issue": ("IssueSeal", lambda sid: seal_pb2.IssueSealRequest(seal_id=sid), FILING),
    "suspend": (
        "SuspendSeal",
        lambda sid: seal_pb2.SuspendSealRequest(
            seal_id=sid, cause=seal_pb2.SUSPENSION_CAUSE_LOSS, reason="lost"
        ),
        FILING,
    ),
    "resume": (
        "ResumeSeal",
        lambda sid: seal_pb2.ResumeSealRequest(seal_id=sid, reason="found"),
        FILING,
    ),
    "revoke": (
        "RevokeSeal",
        lambda sid: seal_pb2.RevokeSealRequest(seal_id=sid, reason="closed"),
        FILING,
    ),
    "destroy": (
        "DestroySeal",
        lambda sid: seal_pb2.DestroySealRequest(seal_id=sid, reason="done"),
        FILING,
    ),
}
# Which operations are legal from each state (everything else must be FAILED_PRECONDITION).
LEGAL = {
    common_pb2.SEAL_STATUS_APPLIED: {"review"},
    common_pb2.SEAL_STATUS_APPROVED: {"make"},
    common_pb2.SEAL_STATUS_MADE: {"file"},
    common_pb2.SEAL_STATUS_FILED: {"issue"},
    common_pb2.SEAL_STATUS_ACTIVE: {"suspend", "revoke"},
    common_pb2.SEAL_STATUS_SUSPENDED: {"resume", "revoke"},
    common_pb2.SEAL_STATUS_REVOKED: {"destroy"},
    common_pb2.SEAL_STATUS_DESTROYED: set(),
    common_pb2.SEAL_STATUS_REJECTED: set(),
}


def _get(grpc_seal: GrpcHandle, seal_id: str) -> seal_pb2.Seal:
    response = grpc_seal.call("GetSeal", seal_pb2.GetSealRequest(seal_id=seal_id), FILING)
    return response.seal  # type: ignore[attr-defined, no-any-return]


def _illegal_everywhere_but(grpc_seal: GrpcHandle, seal_id: str) -> None:
    before = _get(grpc_seal, seal_id)
    allowed = LEGAL[before.status]
    for name, (method, build, principal) in OPERATIONS.items():
        if name in allowed:
            continue
        error = grpc_seal.fails(method, build(seal_id), principal)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, (name, before.status)  # type: ignore[attr-defined]
    after = _get(grpc_seal, seal_id)
    assert after.status == before.status and after.updated_at == before.updated_at


def test_full_lifecycle_over_grpc(world: World, grpc_seal: GrpcHandle) -> None:
    owner = common_pb2.IdentityRef(id=world.company_id)
    # an unrelated citizen may not apply; the representative may
    error = grpc_seal.fails(
        "ApplySeal",
        seal_pb2.ApplySealRequest(owner=owner, kind=common_pb2.SEAL_KIND_OFFICIAL),
        world.user,
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    applied = grpc_seal.call(
        "ApplySeal",
        seal_pb2.ApplySealRequest(
            owner=owner, kind=common_pb2.SEAL_KIND_OFFICIAL, reason="new company"
        ),
        world.rep,
    ).seal  # type: ignore[attr-defined]
    seal_id = applied.id
    assert applied.status == common_pb2.SEAL_STATUS_APPLIED
    assert applied.name == "福州示例科技有限公司"
    # one official seal at a time
    error = grpc_seal.fails(
        "ApplySeal",
        seal_pb2.ApplySealRequest(owner=owner, kind=common_pb2.SEAL_KIND_OFFICIAL),
        world.agent,
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]

    steps = ["review", "make", "file", "issue", "suspend", "resume", "suspend", "revoke", "destroy"]
    for step in steps:
        _illegal_everywhere_but(grpc_seal, seal_id)
        method, build, principal = OPERATIONS[step]
        # a role that may not take the step is refused, and nothing changes
        before = _get(grpc_seal, seal_id)
        wrong = REVIEWER if step in ("make", "destroy") else MAKER
        error = grpc_seal.fails(method, build(seal_id), wrong)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, step  # type: ignore[attr-defined]
        error = grpc_seal.fails(method, build(seal_id), NOBODY)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, step  # type: ignore[attr-defined]
        assert _get(grpc_seal, seal_id).status == before.status
        grpc_seal.call(method, build(seal_id), principal)
        if step == "make":
            made = _get(grpc_seal, seal_id)
            assert made.certificate.der and made.seal_structure
            assert made.key_algorithm == common_pb2.KEY_ALGORITHM_EC_P256
    _illegal_everywhere_but(grpc_seal, seal_id)
    final = _get(grpc_seal, seal_id)
    assert final.status == common_pb2.SEAL_STATUS_DESTROYED and final.destroyed_at.seconds

    # the certificate went through hold, release and revocation in the CA
    cert = world.authority.find(fingerprint=final.certificate.fingerprint_sha256)
    assert cert.status == "revoked" and cert.revocation_reason == 5
    # the key is gone
    import pytest

    from hsm import KeyDestroyed

    with pytest.raises(KeyDestroyed):
        world.keystore.get(cert.key_id or "")

    history = grpc_seal.call(
        "GetSealHistory", seal_pb2.GetSealHistoryRequest(seal_id=seal_id), FILING
    ).events  # type: ignore[attr-defined]
    actions = [e.action for e in history]
    assert actions == [
        seal_pb2.SEAL_ACTION_APPLY,
        seal_pb2.SEAL_ACTION_APPROVE,
        seal_pb2.SEAL_ACTION_MAKE,
        seal_pb2.SEAL_ACTION_FILE,
        seal_pb2.SEAL_ACTION_ISSUE,
        seal_pb2.SEAL_ACTION_SUSPEND,
        seal_pb2.SEAL_ACTION_RESUME,
        seal_pb2.SEAL_ACTION_SUSPEND,
        seal_pb2.SEAL_ACTION_REVOKE,
        seal_pb2.SEAL_ACTION_DESTROY,
    ]
    assert [e.sequence for e in history] == list(range(1, 11))
    assert history[1].role == "seal-reviewer" and history[0].role == "representative"
    assert history[5].reason == "lost" and all(e.audit_record_id for e in history)
    with world.db.read() as session:
        assert verify_chain(session).ok


def test_reject_remake_grants_and_cancelled_owner(world: World, grpc_seal: GrpcHandle) -> None:
    owner = common_pb2.IdentityRef(id=world.company_id)
    rejected = grpc_seal.call(
        "ApplySeal",
        seal_pb2.ApplySealRequest(owner=owner, kind=common_pb2.SEAL_KIND_FINANCE),
        world.agent,
    ).seal  # type: ignore[attr-defined]
    error = grpc_seal.fails(
        "ReviewSeal",
        seal_pb2.ReviewSealRequest(seal_id=rejected.id, decision=seal_pb2.REVIEW_DECISION_REJECT),
        REVIEWER,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    done = grpc_seal.call(
        "ReviewSeal",
        seal_pb2.ReviewSealRequest(
            seal_id=rejected.id,
            decision=seal_pb2.REVIEW_DECISION_REJECT,
            reason="incomplete papers",
        ),
        REVIEWER,
    ).seal  # type: ignore[attr-defined]
    assert done.status == common_pb2.SEAL_STATUS_REJECTED
    _illegal_everywhere_but(grpc_seal, rejected.id)

    seal = world.active_seal()
    grant = grpc_seal.call(
        "GrantSealUse",
        seal_pb2.GrantSealUseRequest(
            seal_id=seal.id,
            grantee=common_pb2.IdentityRef(id=world.user_id),
            document_kinds=["contract"],
        ),
        world.rep,
    ).grant  # type: ignore[attr-defined]
    assert grant.status == common_pb2.GRANT_STATUS_ACTIVE
    error = grpc_seal.fails(
        "GrantSealUse",
        seal_pb2.GrantSealUseRequest(
            seal_id=seal.id, grantee=common_pb2.IdentityRef(id=world.user_id)
        ),
        world.user,
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    listed = grpc_seal.call(
        "ListSealGrants", seal_pb2.ListSealGrantsRequest(seal_id=seal.id), world.rep
    ).grants  # type: ignore[attr-defined]
    assert [g.id for g in listed] == [grant.id]
    revoked = grpc_seal.call(
        "RevokeSealUse",
        seal_pb2.RevokeSealUseRequest(grant_id=grant.id, reason="left the company"),
        world.rep,
    ).grant  # type: ignore[attr-defined]
    assert revoked.status == common_pb2.GRANT_STATUS_REVOKED

    remade = grpc_seal.call(
        "RemakeSeal",
        seal_pb2.RemakeSealRequest(
            seal_id=seal.id, cause=seal_pb2.REMAKE_CAUSE_KEY_COMPROMISE, reason="key leaked"
        ),
        MAKER,
    )
    old, new = remade.old_seal, remade.new_seal  # type: ignore[attr-defined]
    assert old.status == common_pb2.SEAL_STATUS_REVOKED and old.replaced_by_seal_id == new.id
    assert new.status == common_pb2.SEAL_STATUS_MADE and new.replaces_seal_id == old.id
    assert new.certificate.fingerprint_sha256 != old.certificate.fingerprint_sha256
    old_cert = world.authority.find(fingerprint=old.certificate.fingerprint_sha256)
    assert old_cert.status == "revoked" and old_cert.revocation_reason == 1

    image = grpc_seal.call("GetSealImage", seal_pb2.GetSealImageRequest(seal_id=new.id), world.rep)
    assert image.image.startswith(b"\x89PNG") and image.media_type == "image/png"  # type: ignore[attr-defined]
    svg = grpc_seal.call(
        "GetSealImage",
        seal_pb2.GetSealImageRequest(seal_id=new.id, format=seal_pb2.IMAGE_FORMAT_SVG),
        world.rep,
    )
    assert svg.image.startswith(b"<svg")  # type: ignore[attr-defined]

    # cancelling the company revokes its live seals (and their certificates) with it
    from idp.types import IdentityRef, StatusAction
    from tests.seal.conftest import REGISTRAR

    world.registry.update_status(
        REGISTRAR, IdentityRef(id=world.company_id), StatusAction.CANCEL, "dissolved"
    )
    listed_seals = grpc_seal.call("ListSeals", seal_pb2.ListSealsRequest(owner=owner), FILING).seals  # type: ignore[attr-defined]
    assert {s.status for s in listed_seals} <= {
        common_pb2.SEAL_STATUS_REVOKED,
        common_pb2.SEAL_STATUS_REJECTED,
    }
    new_cert = world.authority.find(fingerprint=new.certificate.fingerprint_sha256)
    assert new_cert.status == "revoked"
