"""Sealed PDFs checked by two independent validators: poppler's pdfsig (NSS) and pyHanko.

Valid and trusted with a time-stamp; invalid when altered after sealing; still valid as sealed
before the seal was revoked, while sealing after revocation is refused. Position, anchor-text
and riding placements, B-B / B-T / B-LT, and several seals in turn.
"""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from govtrust.errors import FailedPrecondition, PermissionDenied
from seal.errors import SealNotFound, SealRuleViolation
from seal.pdf import PdfSealRequest
from seal.placement import Anchor, Position, Riding
from seal.signdata import DataRequest, SignData
from seal.structures import verify_signature
from seal.types import PadesLevel, SealKind
from tests.conftest import require_tool
from tests.seal.conftest import FILING, World, one_page_pdf, pages_pdf
from tests.unchanged import unchanged


def _root(world: World) -> x509.Certificate:
    return x509.Certificate.load(world.seal_authority.chain()[-1])


def _nss(world: World, tmp_path: Path) -> Path:
    certutil = require_tool("certutil")
    directory = tmp_path / "nss"
    directory.mkdir()
    root = tmp_path / "root.der"
    root.write_bytes(world.seal_authority.chain()[-1])
    subprocess.run([certutil, "-N", "-d", f"sql:{directory}", "--empty-password"], check=True)
    subprocess.run(
        [certutil, "-A", "-d", f"sql:{directory}", "-n", "root", "-t", ",C,", "-i", str(root)],
        check=True,
    )
    return directory


def pdfsig(nss: Path, pdf: bytes, tmp_path: Path) -> list[str]:
    """pdfsig's per-signature reports (it exits 0 even on a digest mismatch: read its text)."""
    binary = require_tool("pdfsig")
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    result = subprocess.run(
        [binary, "-nssdir", f"sql:{nss}", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout.split("Signature #")[1:]


def _pyhanko(world: World, pdf: bytes, **kwargs: object) -> list[object]:
    """pyHanko's verdicts; OCSP is fetched live, the CRLs are also handed over as a relying party
    may hold them (online fetching alone: ``tests/seal/test_validators.py``)."""
    from asn1crypto import crl

    crls = [crl.CertificateList.load(world.seal_authority.crl())]
    crls += [crl.CertificateList.load(c) for c in world.seal_authority.chain_crls()]
    reader = PdfFileReader(io.BytesIO(pdf))
    return [
        validate_pdf_signature(
            sig,
            ValidationContext(
                trust_roots=[_root(world)],
                allow_fetching=True,
                crls=crls,
                **kwargs,  # type: ignore[arg-type]
            ),
        )
        for sig in reader.embedded_signatures
    ]


def test_sealed_pdf_is_valid_and_trusted_for_pdfsig_and_pyhanko(
    world: World, live_ca: str, tmp_path: Path
) -> None:
    seal = world.active_seal()
    result = world.sealer.seal(
        world.rep,
        PdfSealRequest(
            seal.id,
            one_page_pdf(),
            Position(1, 150, 200),
            PadesLevel.B_T,
            "contract",
            reason="同意",
            location="福州",
        ),
    )
    nss = _nss(world, tmp_path)
    [report] = pdfsig(nss, result.sealed_pdf, tmp_path)
    assert "Signature is Valid" in report and "Certificate is Trusted" in report, report
    assert "Total document signed" in report
    [status] = _pyhanko(world, result.sealed_pdf)
    assert status.intact and status.valid and status.trusted  # type: ignore[attr-defined]
    timestamp = status.timestamp_validity  # type: ignore[attr-defined]
    assert timestamp is not None and timestamp.intact and timestamp.valid and timestamp.trusted
    assert abs(timestamp.timestamp - result.signing_time) < timedelta(seconds=2)

    # the use is in the history with the document digest
    events, _ = world.service.history(seal.id, include_uses=True)
    assert events[-1].action == "seal_pdf" and events[-1].digest == result.document_sha256
    assert events[-1].role == "representative"

    # altered after sealing: both validators say so
    altered = result.sealed_pdf.replace(b"Seal here", b"Seal HERE", 1)
    assert altered != result.sealed_pdf
    [report] = pdfsig(nss, altered, tmp_path)
    assert "Signature is Valid" not in report and "Digest Mismatch" in report, report
    [status] = _pyhanko(world, altered)
    assert not status.intact and not status.bottom_line  # type: ignore[attr-defined]


def test_revocation_keeps_earlier_seals_valid_and_refuses_new_ones(
    world: World, live_ca: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seal = world.active_seal()
    before = world.sealer.seal(
        world.rep,
        PdfSealRequest(seal.id, one_page_pdf(), Position(1, 100, 100), PadesLevel.B_T, "contract"),
    )
    # Revoked a few seconds later (time-stamps and revocation times have whole seconds: in the
    # same second the validator could not tell which came first).
    later = datetime.now(UTC) + timedelta(seconds=5)
    monkeypatch.setattr("ca.revocation.now", lambda: later.replace(microsecond=0))
    monkeypatch.setattr(world.service, "_clock", lambda: later)
    world.service.revoke(FILING, seal.id, "company closed its contract desk")
    monkeypatch.undo()
    with unchanged(world.db, world.keystore), pytest.raises(FailedPrecondition, match="revoked"):
        world.sealer.seal(world.rep, PdfSealRequest(seal.id, one_page_pdf()))
    # validated at the time-stamp's time, with today's revocation information: the seal was
    # good then (revoked later), so the seal stands
    [status] = _pyhanko(
        world, before.sealed_pdf, moment=before.signing_time, retroactive_revinfo=True
    )
    assert status.intact and status.valid and status.trusted  # type: ignore[attr-defined]
    assert status.timestamp_validity.timestamp < world.service.get(seal.id).revoked_at  # type: ignore[attr-defined]
    # validated now, the certificate is revoked
    [now_status] = _pyhanko(world, before.sealed_pdf)
    assert not now_status.trusted or now_status.revoked  # type: ignore[attr-defined]


def test_only_grant_holders_and_representatives_may_seal(world: World) -> None:
    seal = world.active_seal()
    pdf = one_page_pdf()
    with unchanged(world.db, world.keystore), pytest.raises(PermissionDenied):
        world.sealer.seal(world.user, PdfSealRequest(seal.id, pdf, level=PadesLevel.B_B))
    from idp.types import IdentityRef

    grant = world.service.grant_use(
        world.rep, seal.id, IdentityRef(id=world.user_id), ["contract"], None, None
    )
    with unchanged(world.db, world.keystore), pytest.raises(PermissionDenied, match="invoice"):
        world.sealer.seal(
            world.user, PdfSealRequest(seal.id, pdf, level=PadesLevel.B_B, document_kind="invoice")
        )
    sealed = world.sealer.seal(
        world.user, PdfSealRequest(seal.id, pdf, level=PadesLevel.B_B, document_kind="contract")
    )
    assert sealed.event.role == "grantee"
    world.service.revoke_use(world.rep, grant.id, "no longer needed")
    with unchanged(world.db, world.keystore), pytest.raises(PermissionDenied):
        world.sealer.seal(
            world.user, PdfSealRequest(seal.id, pdf, level=PadesLevel.B_B, document_kind="contract")
        )
    world.service.suspend(world.rep, seal.id, "loss", "seal key card lost")
    with unchanged(world.db, world.keystore), pytest.raises(FailedPrecondition, match="suspended"):
        world.sealer.seal(world.rep, PdfSealRequest(seal.id, pdf, level=PadesLevel.B_B))


def test_placements_levels_and_several_seals(world: World, live_ca: str, tmp_path: Path) -> None:
    contract = world.active_seal()
    official = world.active_seal(SealKind.OFFICIAL)
    pdf = one_page_pdf()
    first = world.sealer.seal(
        world.agent,
        PdfSealRequest(contract.id, pdf, Anchor("Seal here", 1, 20, 0), PadesLevel.B_B, "contract"),
    )
    second = world.sealer.seal(
        world.rep,
        PdfSealRequest(official.id, first.sealed_pdf, Position(-1, 60, 60), PadesLevel.B_LT),
    )
    reader = PdfFileReader(io.BytesIO(second.sealed_pdf))
    assert len(reader.embedded_signatures) == 2
    assert "/DSS" in reader.root  # B-LT: revocation info embedded
    third = world.sealer.seal(
        world.rep,
        PdfSealRequest(
            contract.id, second.sealed_pdf, Position(1, 150, 150), PadesLevel.B_T, "contract"
        ),
    )
    statuses = _pyhanko(world, third.sealed_pdf)
    assert len(statuses) == 3
    assert all(s.intact and s.valid and s.trusted for s in statuses)  # type: ignore[attr-defined]
    nss = _nss(world, tmp_path)
    reports = pdfsig(nss, third.sealed_pdf, tmp_path)
    assert len(reports) == 3 and all("Signature is Valid" in r for r in reports), reports
    # pdfsig 22.12 reads NSS's thread error code even when verification succeeded; a signer
    # certificate already imported for an earlier signature of the same file leaves one set,
    # so the repeat gets "Unknown issue" whichever writer made it (pyHanko's general path
    # too). The first signature of each seal must be trusted; pyHanko checks all three.
    assert "Certificate is Trusted" in reports[0] and "Certificate is Trusted" in reports[1]

    riding = world.sealer.seal(
        world.rep, PdfSealRequest(official.id, pages_pdf(4), Riding(edge="right"), PadesLevel.B_B)
    )
    reader = PdfFileReader(io.BytesIO(riding.sealed_pdf))
    annots = [
        a.get_object()
        for p in range(4)
        for a in reader.root["/Pages"]["/Kids"][p].get_object().get("/Annots", [])
    ]
    assert sum(a["/Subtype"] == "/Stamp" for a in annots) == 4  # one slice per page
    [status] = _pyhanko(world, riding.sealed_pdf)
    assert status.intact and status.valid  # type: ignore[attr-defined]


def test_sign_data_cms_and_ses(world: World) -> None:
    seal = world.active_seal()
    signer = SignData(world.service)
    ses = signer.sign(
        world.rep,
        DataRequest(seal.id, data=b"payload", ses=True, timestamp=True, property_info="doc-42"),
    )
    parsed = verify_signature(ses.signature, data=b"payload")
    assert parsed.time_stamp_token is not None and parsed.property_info == "doc-42"
    cms_result = signer.sign(world.rep, DataRequest(seal.id, data=b"payload", timestamp=True))
    from asn1crypto import cms

    content = cms.ContentInfo.load(cms_result.signature)
    signed = content["content"]
    assert signed["encap_content_info"]["content"].native is None  # detached
    info = signed["signer_infos"][0]
    assert info["unsigned_attrs"][0]["type"].native == "signature_time_stamp_token"
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    public = cx.load_der_x509_certificate(seal.certificate_der or b"").public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        info["signature"].native,
        info["signed_attrs"].dump(force=False).replace(b"\xa0", b"\x31", 1),
        ec.ECDSA(hashes.SHA256()),
    )
    events, _ = world.service.history(seal.id, include_uses=True)
    assert [e.action for e in events[-2:]] == ["sign_data", "sign_data"]


def test_xref_stream_documents_and_bad_input(world: World) -> None:
    """Documents the fast writer does not handle go through pyHanko; garbage is refused."""
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    from govtrust.errors import InvalidArgument

    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(one_page_pdf())))
    writer.stream_xrefs = True
    buffer = io.BytesIO()
    writer.write(buffer)
    assert b"/XRef" in buffer.getvalue()
    seal = world.active_seal()
    sealed = world.sealer.seal(
        world.rep, PdfSealRequest(seal.id, buffer.getvalue(), Position(1, 50, 50), PadesLevel.B_B)
    )
    [status] = _pyhanko(world, sealed.sealed_pdf)
    assert status.intact and status.valid  # type: ignore[attr-defined]
    for bad in (b"not a pdf", b"%PDF-1.7\n garbage without structure"):
        with unchanged(world.db, world.keystore), pytest.raises(InvalidArgument):
            world.sealer.seal(world.rep, PdfSealRequest(seal.id, bad, Position(1, 50, 50)))
    with unchanged(world.db, world.keystore), pytest.raises(InvalidArgument, match="pages"):
        world.sealer.seal(world.rep, PdfSealRequest(seal.id, one_page_pdf(), Position(3, 50, 50)))
    events, _ = world.service.history(seal.id, include_uses=True)
    assert [e.action for e in events].count("seal_pdf") == 1  # refused calls record nothing


def test_a_lost_use_is_sealed_again_bound_to_it_and_only_for_its_document(world: World) -> None:
    """``reproduce`` (a retry whose answer was lost) signs the same document again for the
    recorded use — its event, no second use — and refuses another document, another caller,
    another action or no such use, changing nothing."""
    seal = world.active_seal()
    request = PdfSealRequest(seal.id, one_page_pdf(), Position(1, 100, 100), PadesLevel.B_B)
    first = world.sealer.seal(world.rep, request)
    seq = first.event.audit_seq
    other = PdfSealRequest(seal.id, one_page_pdf("another text"), Position(1, 100, 100))
    with unchanged(world.db, world.keystore):
        with pytest.raises(SealRuleViolation, match="recorded another document"):
            world.sealer.reproduce(world.rep, other, seq)
        with pytest.raises(SealNotFound):
            world.sealer.reproduce(world.agent, request, seq)
        with pytest.raises(SealNotFound):
            world.sealer.reproduce(world.rep, request, seq + 1000)
        with pytest.raises(SealNotFound):
            SignData(world.service).reproduce(world.rep, DataRequest(seal.id, data=b"x"), seq)
    again = world.sealer.reproduce(world.rep, request, seq)
    assert again.event == first.event and again.document_sha256 == first.document_sha256
    assert again.sealed_pdf != first.sealed_pdf and again.sealed_pdf.startswith(request.pdf)
    events, _ = world.service.history(seal.id, include_uses=True)
    assert [e.sequence for e in events if e.action == "seal_pdf"] == [first.event.sequence]
    assert events[-1].sequence == first.event.sequence  # no event after the use
