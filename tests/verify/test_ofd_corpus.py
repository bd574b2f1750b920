"""VerifyOfd's corpus (issue 17 items 4 and 5): OFD documents sealed for real by SealOfd with
SM2 seals (our SM2 TSA's time-stamps), then tampered with, and bad input of every kind; each
with the expected verdict and reasons, or the expected error, and nothing stored but the
verification's own audit record."""

from __future__ import annotations

import io
import re
import time
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from govtrust.audit import AuditRecord
from govtrust.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from seal.ofd.model import Font
from seal.ofd.package import OfdPackage, read_package, write_package
from seal.ofd.validation import FindingKind, check_ofd
from seal.ofd.writer import write_document
from seal.ofd_seal import OfdSealRequest, SealOfd, read_ofd
from seal.placement import Position
from seal.types import SealStatus, SealView
from tests.seal.conftest import FILING, World
from tests.seal.test_ofd_document import _document, cjk_font  # noqa: F401
from tests.seal.test_sm2_seals import _active
from tests.unchanged import unchanged
from tests.verify.conftest import NOBODY, VERIFIER
from tests.verify.test_seal_signatures import _now, wait_past
from verify.ofd import OfdCheck, verify_ofd_check
from verify.report import (
    EvidenceKind,
    ReasonCode,
    ReportOptions,
    SignatureFormat,
    SigningTimeSource,
    Verdict,
    VerificationReport,
)
from verify.service import VerifyConfig, VerifyContext

SIGNATURE = "Doc_0/Signs/Sign_0/Signature.xml"
PAGE = "Doc_0/Pages/Page_0/Content.xml"
EN = ReportOptions(locale="en")


def codes(report: VerificationReport) -> set[ReasonCode]:
    return {r.code for r in report.reasons}


def messages(report: VerificationReport) -> str:
    return " | ".join(r.message for r in report.reasons)


def check(ctx: VerifyContext, ofd: bytes) -> VerificationReport:
    """VerifyOfd as the RPC runs it, waiting for the audit record."""
    verified = verify_ofd_check(ctx, VERIFIER, OfdCheck(ofd, options=EN))
    verified.audited.result(timeout=30)
    return verified.report


def audit_count(world: World) -> int:
    with world.db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "verify.ofd")
            )
            or 0
        )


def sealed(world: World, seal: SealView, ofd: bytes, x: float = 150) -> bytes:
    request = OfdSealRequest(seal.id, ofd, placement=Position(1, x, 200))
    return SealOfd(world.service).seal(world.rep, request).sealed.ofd


def rewrite(ofd: bytes, changes: dict[str, bytes | None]) -> bytes:
    """The package with files replaced (bytes), added (new name) or removed (None)."""
    files = dict(read_package(ofd).files)
    for path, data in changes.items():
        if data is None:
            del files[path]
        else:
            files[path] = data
    return write_package(OfdPackage(files))


@pytest.fixture
def sm2_seal(vworld: World) -> SealView:
    return _active(vworld, "sm2")  # type: ignore[no-any-return]


@pytest.fixture
def plain(cjk_font: Font) -> bytes:  # noqa: F811
    return write_document(_document(cjk_font))


def test_valid_sealed_ofd(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    ofd = sealed(vworld, sm2_seal, plain)
    before = audit_count(vworld)
    with unchanged(vworld.db, vworld.keystore, allow=["audit_log"]):
        report = check(ctx, ofd)
    assert audit_count(vworld) == before + 1
    assert report.verdict is Verdict.VALID, report.reasons
    assert report.evidence_kind is EvidenceKind.OFD
    assert report.document is not None and report.document.signature_count == 1
    assert report.document.page_count == 1
    [sig] = report.signatures
    assert sig.format is SignatureFormat.SES_SIGNATURE and sig.field_name == SIGNATURE
    assert sig.intact and sig.signature_valid and sig.pages == (1,)
    assert sig.signature_algorithm == "SM2-with-SM3"
    assert sig.digest_algorithm is not None and sig.digest_algorithm.value == "sm3"
    assert sig.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.timestamp is not None and sig.timestamp.verdict is Verdict.VALID
    assert sig.certificate is not None and sig.certificate.trusted
    assert "sm2-root" in [c.issuer_ca for c in sig.certificate.chain]  # the SM2 hierarchy
    assert sig.timestamp.tsa_certificate is not None and sig.timestamp.tsa_certificate.trusted
    assert sig.seal is not None and sig.seal.seal_id == sm2_seal.id
    assert sig.seal.seal_structure_verdict is Verdict.VALID
    assert sig.seal.status_at_signing_time is SealStatus.ACTIVE
    assert sig.seal.applied_by is not None and sig.seal.applied_by.id == vworld.rep.citizen_id


def test_one_byte_changed_in_a_page_is_invalid_naming_it(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    ofd = sealed(vworld, sm2_seal, plain)
    page = read_package(ofd).files[PAGE]
    at = page.index(b"<ofd:TextCode")
    tampered = rewrite(ofd, {PAGE: page[:at] + b" " + page[at + 1 :]})
    report = check(ctx, tampered)
    assert report.verdict is Verdict.INVALID
    assert codes(report) == {ReasonCode.DIGEST_MISMATCH}
    assert f"{PAGE} was changed after signing" in messages(report)
    [sig] = report.signatures
    assert not sig.intact and sig.signature_valid  # the signature itself still verifies


def test_a_file_added_after_sealing_is_invalid_naming_it(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    ofd = sealed(vworld, sm2_seal, plain)
    report = check(ctx, rewrite(ofd, {"Doc_0/Res/extra.png": b"\x89PNG later"}))
    assert report.verdict is Verdict.INVALID and codes(report) == {ReasonCode.DIGEST_MISMATCH}
    assert "Doc_0/Res/extra.png was added after signing" in messages(report)


def test_a_referenced_file_missing_is_invalid_naming_it(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    ofd = sealed(vworld, sm2_seal, plain)
    image = next(name for name in read_package(ofd).files if name.endswith(".png"))
    report = check(ctx, rewrite(ofd, {image: None}))
    assert report.verdict is Verdict.INVALID and codes(report) == {ReasonCode.DIGEST_MISMATCH}
    assert f"{image} was removed after signing" in messages(report)


def test_swapped_reference_digests_break_the_signature_xml_data_hash(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    ofd = sealed(vworld, sm2_seal, plain)
    xml = read_package(ofd).files[SIGNATURE]
    values = re.findall(rb"<ofd:CheckValue>([^<]+)</ofd:CheckValue>", xml)
    first, second = values[0], values[1]
    swapped = xml.replace(first, b"@@", 1).replace(second, first, 1).replace(b"@@", second, 1)
    assert swapped != xml
    report = check(ctx, rewrite(ofd, {SIGNATURE: swapped}))
    assert report.verdict is Verdict.INVALID and codes(report) == {ReasonCode.DIGEST_MISMATCH}
    text = messages(report)
    assert f"{SIGNATURE} does not match the dataHash" in text
    assert text.count("was changed after signing") == 2  # the two files whose digests moved


def _retained_use(world: World, seal: SealView) -> Any:
    """A use authorised while the seal was active (a retained or stolen key)."""
    return world.service.authorise_use(world.rep, seal.id, "")


def _sign_after_revocation(world: World, seal: SealView, ofd: bytes) -> bytes:
    """What a key kept after the seal's revocation makes: revoked, then signed (time-stamped by
    our TSA after the revocation) with a use context authorised before."""
    use = _retained_use(world, seal)
    world.service.revoke(FILING, seal.id, "key compromised")
    wait_past(_now().replace(microsecond=0) + timedelta(seconds=2))  # past the accuracy window
    return SealOfd(world.service).sign(use, read_ofd(ofd), Position(1, 60, 200)).ofd


def test_seal_revoked_before_signing_is_invalid(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    report = check(ctx, _sign_after_revocation(vworld, sm2_seal, plain))
    assert report.verdict is Verdict.INVALID
    assert {ReasonCode.CERTIFICATE_REVOKED, ReasonCode.SEAL_NOT_ACTIVE} <= codes(report)
    [sig] = report.signatures
    assert sig.intact and sig.signature_valid
    assert sig.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.seal is not None and sig.seal.status_at_signing_time is SealStatus.REVOKED


def test_seal_revoked_after_time_stamped_signing_is_valid(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    ofd = sealed(vworld, sm2_seal, plain)
    wait_past(_now().replace(microsecond=0) + timedelta(seconds=2))
    vworld.service.revoke(FILING, sm2_seal.id, "company dissolved")
    report = check(ctx, ofd)
    assert report.verdict is Verdict.VALID, report.reasons
    warnings = {w.code for w in report.warnings}
    assert {ReasonCode.CERTIFICATE_REVOKED, ReasonCode.SEAL_NOT_ACTIVE} <= warnings
    [sig] = report.signatures
    assert sig.seal is not None
    assert sig.seal.status_at_signing_time is SealStatus.ACTIVE
    assert sig.seal.status_now is SealStatus.REVOKED


def test_two_seals_one_invalid(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    once = sealed(vworld, sm2_seal, plain)
    other = _active(vworld, "sm2")
    twice = _sign_after_revocation(vworld, other, once)
    report = check(ctx, twice)
    assert report.verdict is Verdict.INVALID
    first, second = report.signatures
    assert first.verdict is Verdict.VALID, first.reasons
    assert first.intact and first.seal is not None and first.seal.seal_id == sm2_seal.id
    assert second.verdict is Verdict.INVALID and second.intact
    assert second.seal is not None and second.seal.seal_id == other.id
    assert second.field_name == "Doc_0/Signs/Sign_1/Signature.xml"
    assert all(r.subject.startswith("signatures[1]") for r in report.reasons)
    # the same two seals, both good: VALID (the later seal leaves the first intact)
    both = sealed(vworld, _active(vworld, "sm2"), once, x=60)
    assert check(ctx, both).verdict is Verdict.VALID


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)  # keeps a name zipfile would otherwise clean
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out.getvalue()


def test_bad_input_is_reported_invalid_naming_the_defect(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    from tests.seal.conftest import one_page_pdf

    ofd = sealed(vworld, sm2_seal, plain)
    files = dict(read_package(ofd).files)
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY l2 "&lol;&lol;">]>'
        b'<ofd:Signature xmlns:ofd="http://www.ofdspec.org/2016">&l2;</ofd:Signature>'
    )
    cases: list[tuple[str, bytes, ReasonCode, str]] = [
        ("truncated", ofd[: len(ofd) // 2], ReasonCode.FORMAT_ERROR, "not a valid OFD"),
        ("garbage", b"garbage, not a zip" * 10, ReasonCode.FORMAT_ERROR, "not a zip file"),
        ("a PDF", one_page_pdf(), ReasonCode.FORMAT_ERROR, "not a zip file"),
        (
            "an entry with ..",
            _zip({**files, "Doc_0/../../evil.xml": b"<x/>"}),
            ReasonCode.FORMAT_ERROR,
            "'..' part",
        ),
        (
            "an absolute entry name",
            _zip({**files, "/etc/evil.xml": b"<x/>"}),
            ReasonCode.FORMAT_ERROR,
            "absolute path",
        ),
        (
            "duplicate entries",
            _zip({**files, "doc_0/PAGES/page_0/content.xml": b"<x/>"}),
            ReasonCode.FORMAT_ERROR,
            "duplicate entry",
        ),
        (
            "a DTD in OFD.xml",
            rewrite(ofd, {"OFD.xml": laughs}),
            ReasonCode.FORMAT_ERROR,
            "document type declaration",
        ),
        (
            "a DTD in Signature.xml",
            rewrite(ofd, {SIGNATURE: laughs}),
            ReasonCode.FORMAT_ERROR,
            "document type declaration",
        ),
        ("unsigned", plain, ReasonCode.NO_SIGNATURE, "carries no signature"),
    ]
    for name, data, code, text in cases:
        before = audit_count(vworld)
        with unchanged(vworld.db, vworld.keystore, allow=["audit_log"]):
            report = check(ctx, data)
        assert report.verdict is Verdict.INVALID, name
        assert code in codes(report), (name, report.reasons)
        assert text in messages(report), (name, messages(report))
        assert audit_count(vworld) == before + 1, name  # the check's own audit record only
    unsigned = check(ctx, plain)
    assert unsigned.signatures == () and unsigned.document is not None
    assert unsigned.document.page_count == 1 and unsigned.document.signature_count == 0


def test_errors_store_nothing(vworld: World, ctx: VerifyContext, plain: bytes) -> None:
    bomb = _zip({"OFD.xml": b"<x/>", "Doc_0/bomb.xml": b"\0" * (40 * 1024 * 1024)})
    small = VerifyContext(
        vworld.db, vworld.keystore, vworld.authority, config=VerifyConfig(max_ofd_bytes=1000)
    )
    document = read_package(plain).files["Doc_0/Document.xml"]
    pages = b"".join(
        b'<ofd:Page ID="%d" BaseLoc="Pages/Page_0/Content.xml"/>' % i for i in range(2000)
    )
    many_pages = rewrite(
        plain,
        {
            "Doc_0/Document.xml": re.sub(
                rb"<ofd:Pages>.*</ofd:Pages>",
                b"<ofd:Pages>" + pages + b"</ofd:Pages>",
                document,
                flags=re.S,
            )
        },
    )
    cases: list[tuple[VerifyContext, Any, bytes, type[Exception], str]] = [
        (ctx, VERIFIER, b"", InvalidArgument, "ofd"),
        (ctx, VERIFIER, many_pages, ResourceExhausted, "number of pages"),
        (ctx, VERIFIER, bomb, ResourceExhausted, "compression ratio"),
        (small, VERIFIER, plain, ResourceExhausted, "ofd: the document is larger than.*MAX_OFD"),
        (ctx, NOBODY, plain, PermissionDenied, "verifier"),
    ]
    try:
        for context, principal, data, error, text in cases:
            with unchanged(vworld.db, vworld.keystore), pytest.raises(error, match=text):
                verify_ofd_check(context, principal, OfdCheck(data))
    finally:
        small.close()


def test_technical_check_without_a_database(
    vworld: World, sm2_seal: SealView, plain: bytes
) -> None:
    """seal.ofd.validation alone: what the licence checker reuses."""
    ofd = sealed(vworld, sm2_seal, plain)
    result = check_ofd(ofd)
    [sig] = result.signatures
    assert sig.intact and sig.signature_valid and not sig.findings
    assert sig.seal_id == sm2_seal.id and sig.signer_certificate == sm2_seal.certificate_der
    assert sig.time_stamp_token and sig.data_hash and sig.claimed_time is not None
    assert (sig.signature_algorithm, sig.digest_algorithm) == ("1.2.156.10197.1.501", "sm3")
    # a wrong Seal.esl, a stamp on no page and a SignatureMethod that is not the SES algorithm
    xml = read_package(ofd).files[SIGNATURE]
    bad_xml = re.sub(rb'PageRef="\d+"', b'PageRef="999"', xml).replace(
        b"1.2.156.10197.1.501", b"1.2.840.10045.4.3.2"
    )
    bad = check_ofd(
        rewrite(
            ofd,
            {"Doc_0/Signs/Sign_0/Seal.esl": b"not the seal", SIGNATURE: bad_xml},
        )
    )
    [sig] = bad.signatures
    kinds = {f.kind for f in sig.findings}
    assert {FindingKind.SEAL, FindingKind.FORMAT, FindingKind.INTEGRITY} <= kinds
    text = " | ".join(sig.problems)
    assert "Doc_0/Signs/Sign_0/Seal.esl is not the seal" in text
    assert "refers to page 999" in text and "is not the SES_Signature's algorithm" in text
    assert sig.signature_valid  # the signer's signature over TBS_Sign is still good
    assert check_ofd(plain).signatures == ()


def test_an_ofd_sealed_again_for_a_lost_answer_is_valid_and_names_who_applied_it(
    vworld: World, ctx: VerifyContext, sm2_seal: SealView, plain: bytes
) -> None:
    """A retry whose answer was lost gets the OFD sealed again bound to the recorded use
    (:meth:`SealOfd.reproduce`): the verifier finds it valid, time-stamped later than its
    recorded SignatureDateTime, and still finds who applied the seal (the dataHash is the
    use's digest)."""
    request = OfdSealRequest(sm2_seal.id, plain, placement=Position(1, 150, 200))
    first = SealOfd(vworld.service).seal(vworld.rep, request)
    time.sleep(1.1)
    again = SealOfd(vworld.service).reproduce(vworld.rep, request, first.event.audit_seq)
    report = check(ctx, again.sealed.ofd)
    assert report.verdict is Verdict.VALID, report.reasons
    [sig] = report.signatures
    assert sig.intact and sig.signature_valid
    assert sig.timestamp is not None and sig.timestamp.verdict is Verdict.VALID
    assert sig.seal is not None and sig.seal.applied_by is not None
    assert sig.seal.applied_by.id == vworld.rep.citizen_id
