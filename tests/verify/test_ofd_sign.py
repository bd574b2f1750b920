"""VerifyOfd on ``Type="Sign"`` signatures: an OFD digitally signed (no seal) with a CMS
SignedData (PKCS#7) over Signature.xml, made by SignData with a seal certificate and time-stamped
by our TSA; valid, then tampered with (a page changed, the signature value swapped for one over
other bytes, garbage in SignedValue.dat), and beside an SES seal signature on the same document."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seal.ofd.model import Font
from seal.ofd.package import ROOT_FILE, OfdPackage, read_package, write_package
from seal.ofd.signatures import (
    SM3_OID,
    Provider,
    Reference,
    SignatureEntry,
    SignatureFile,
    SignatureList,
    signature_list_xml,
    signature_xml,
    sm3,
    with_signature_list,
)
from seal.ofd.validation import SIGN_TYPE, check_ofd
from seal.ofd.writer import write_document
from seal.signdata import DataRequest, SignData
from seal.types import SealKind, SealStatus, SealView
from tests.seal.conftest import World
from tests.seal.test_ofd_document import _document, cjk_font  # noqa: F401
from tests.verify.test_ofd_corpus import PAGE, check, codes, messages, sealed, sm2_seal  # noqa: F401
from verify.report import ReasonCode, SignatureFormat, SigningTimeSource, Verdict
from verify.service import VerifyContext

LIST = "Doc_0/Signs/Signatures.xml"
SIGN = "Doc_0/Signs/Sign_0/Signature.xml"
VALUE = "Doc_0/Signs/Sign_0/SignedValue.dat"


@pytest.fixture
def plain(cjk_font: Font) -> bytes:  # noqa: F811
    return write_document(_document(cjk_font))


@pytest.fixture
def contract_seal(vworld: World) -> SealView:
    return vworld.active_seal(SealKind.CONTRACT)


def sign_ofd(world: World, seal: SealView, ofd: bytes, *, signed: bytes | None = None) -> bytes:
    """``ofd`` with one ``Type="Sign"`` signature: Signature.xml listing the SM3 of every file
    but the list, and SignData's detached CMS (time-stamped) over its bytes (or over ``signed``
    when given: a signature value of other bytes)."""
    files = dict(read_package(ofd).files)
    files[ROOT_FILE] = with_signature_list(files[ROOT_FILE], LIST)
    files[LIST] = signature_list_xml(SignatureList(LIST, 1, (SignatureEntry(1, SIGN_TYPE, SIGN),)))
    references = tuple(Reference(name, sm3(files[name])) for name in sorted(files) if name != LIST)
    xml = signature_xml(
        SignatureFile(
            provider=Provider("govtrust tests"),
            signature_method="1.2.840.10045.4.3.2",
            date_time=datetime.now(UTC).strftime("%Y%m%d%H%M%SZ"),
            check_method=SM3_OID,
            references=references,
            stamp_annots=(),
            seal_file=None,
            signed_value_file=VALUE,
        )
    )
    files[SIGN] = xml
    request = DataRequest(seal.id, data=xml if signed is None else signed, timestamp=True)
    files[VALUE] = SignData(world.service).sign(world.rep, request).signature
    return write_package(OfdPackage(files))


def test_a_sign_type_signature_is_valid_and_names_its_seal(
    vworld: World, ctx: VerifyContext, contract_seal: SealView, plain: bytes
) -> None:
    ofd = sign_ofd(vworld, contract_seal, plain)
    [technical] = check_ofd(ofd).signatures
    assert technical.type == SIGN_TYPE and technical.intact and technical.signature_valid
    assert technical.problems == ()
    report = check(ctx, ofd)
    assert report.verdict is Verdict.VALID, messages(report)
    [sig] = report.signatures
    assert sig.format is SignatureFormat.CMS
    assert sig.intact and sig.signature_valid
    assert sig.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.timestamp is not None and sig.timestamp.verdict is Verdict.VALID
    assert sig.certificate is not None and sig.certificate.trusted
    assert sig.seal is not None and sig.seal.seal_id == contract_seal.id
    assert sig.seal.status_now is SealStatus.ACTIVE
    assert sig.seal.applied_by is not None and sig.seal.applied_by.id == vworld.rep.citizen_id
    assert sig.field_name == SIGN


def test_a_page_changed_after_signing_is_invalid(
    vworld: World, ctx: VerifyContext, contract_seal: SealView, plain: bytes
) -> None:
    files = dict(read_package(sign_ofd(vworld, contract_seal, plain)).files)
    files[PAGE] = files[PAGE].replace(b"</ofd:Layer>", b"<!-- x --></ofd:Layer>", 1)
    assert files[PAGE] != read_package(plain).files[PAGE]
    report = check(ctx, write_package(OfdPackage(files)))
    assert report.verdict is Verdict.INVALID
    assert ReasonCode.DIGEST_MISMATCH in codes(report)
    assert PAGE in messages(report)


def test_a_signature_value_over_other_bytes_is_invalid(
    vworld: World, ctx: VerifyContext, contract_seal: SealView, plain: bytes
) -> None:
    ofd = sign_ofd(vworld, contract_seal, plain, signed=b"something else")
    report = check(ctx, ofd)
    assert report.verdict is Verdict.INVALID
    [sig] = report.signatures
    assert not sig.intact and sig.signature_valid  # a good signature, of other bytes
    assert ReasonCode.DIGEST_MISMATCH in codes(report)
    assert "is not what" in messages(report)


def test_garbage_signed_value_is_a_format_error(
    vworld: World, ctx: VerifyContext, contract_seal: SealView, plain: bytes
) -> None:
    files = dict(read_package(sign_ofd(vworld, contract_seal, plain)).files)
    files[VALUE] = b"\x30\x03\x02\x01\x01"  # DER, but no ContentInfo
    report = check(ctx, write_package(OfdPackage(files)))
    assert report.verdict is Verdict.INVALID
    assert ReasonCode.FORMAT_ERROR in codes(report)
    assert "CMS SignedData" in messages(report)


def test_a_seal_after_a_sign_type_signature_leaves_both_valid(
    vworld: World,
    ctx: VerifyContext,
    contract_seal: SealView,
    sm2_seal: SealView,  # noqa: F811
    plain: bytes,
) -> None:
    ofd = sealed(vworld, sm2_seal, sign_ofd(vworld, contract_seal, plain))
    report = check(ctx, ofd)
    assert report.verdict is Verdict.VALID, messages(report)
    formats = [s.format for s in report.signatures]
    assert formats == [SignatureFormat.CMS, SignatureFormat.SES_SIGNATURE]
