"""SealOfd (issue 17 item 2): OFD documents sealed with GB/T 38540 signatures laid out as GM/T 0099.

Judged by parts that are not ours: the SES_Signature and SESeal by the test-only GB/T 38540 reader
(tests/seal/gbt38540.py), the SM2 signatures by openssl, the reference digests by ``openssl dgst
-sm3``, the XML with lxml and XPath against the namespace, and the rendering by easyofd.
"""

from __future__ import annotations

import base64
import io
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from PIL import Image as PILImage

from govtrust.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from govtrust.v1 import common_pb2, seal_pb2
from seal.errors import OfdMalformed, OfdTooLarge, SealRuleViolation
from seal.lifecycle import Use
from seal.ofd.model import Font
from seal.ofd.package import OfdPackage, read_package, write_package
from seal.ofd.writer import write_document
from seal.ofd_seal import OfdSealRequest, SealOfd
from seal.placement import Anchor, Position, Riding
from seal.types import SealView
from tests.ca.test_sm2 import pkeyutl_verify
from tests.conftest import require_tool
from tests.seal import gbt38540
from tests.seal.conftest import FILING, GrpcHandle, World
from tests.seal.test_ofd_document import HOLDER, _document, cjk_font, easyofd_font  # noqa: F401
from tests.seal.test_sm2_seals import _active
from tests.unchanged import unchanged

NS = {"ofd": "http://www.ofdspec.org/2016"}
SM3_WITH_SM2 = "1.2.156.10197.1.501"


@pytest.fixture
def sm2_seal(world: World) -> SealView:
    return _active(world, "sm2")  # type: ignore[no-any-return]


def _sealer(world: World) -> SealOfd:
    return SealOfd(world.service)


def _tree(data: bytes) -> Any:
    """The parsed XML (typed loosely: the tests walk it with XPath)."""
    return etree.fromstring(data)


def _xml(package: OfdPackage, name: str) -> Any:
    return _tree(package.files[name])


def _openssl_sm3(tmp_path: Path, data: bytes) -> bytes:
    openssl = require_tool("openssl")
    file = tmp_path / "digest-input"
    file.write_bytes(data)
    out = subprocess.run(
        [openssl, "dgst", "-sm3", "-binary", str(file)], capture_output=True, check=True
    ).stdout
    return out


def _seal(world: World, seal: SealView, ofd: bytes, placement: object = None) -> bytes:
    request = OfdSealRequest(seal.id, ofd, placement=placement)  # type: ignore[arg-type]
    return _sealer(world).seal(world.rep, request).sealed.ofd


def test_sealed_ofd_layout_digests_and_sm2_signature_checked_independently(
    world: World,
    sm2_seal: SealView,
    cjk_font: Font,  # noqa: F811
    tmp_path: Path,
) -> None:
    original = write_document(_document(cjk_font))
    result = _sealer(world).seal(
        world.rep, OfdSealRequest(sm2_seal.id, original, placement=Position(1, 150, 200))
    )
    package = read_package(result.sealed.ofd)

    ofd = _xml(package, "OFD.xml")
    assert ofd.xpath("string(ofd:DocBody/ofd:Signatures)", namespaces=NS) == (
        "/Doc_0/Signs/Signatures.xml"
    )
    listing = _xml(package, "Doc_0/Signs/Signatures.xml")
    assert listing.xpath("string(ofd:MaxSignId)", namespaces=NS) == "2"  # signature 1, stamp 2
    (entry,) = listing.xpath("ofd:Signature", namespaces=NS)
    assert (entry.get("ID"), entry.get("Type"), entry.get("BaseLoc")) == (
        "1",
        "Seal",
        "/Doc_0/Signs/Sign_0/Signature.xml",
    )

    signature_xml = package.files["Doc_0/Signs/Sign_0/Signature.xml"]
    signature = _tree(signature_xml)
    info = signature.find("ofd:SignedInfo", NS)
    assert info.findtext("ofd:SignatureMethod", namespaces=NS) == SM3_WITH_SM2
    references = info.find("ofd:References", NS)
    assert references.get("CheckMethod") == "1.2.156.10197.1.401"
    listed = {
        node.get("FileRef"): base64.b64decode(node.findtext("ofd:CheckValue", namespaces=NS))
        for node in references.findall("ofd:Reference", NS)
    }
    # every file but the signature list and this signature's own two files, by openssl's SM3
    expected = set(package.files) - {
        "Doc_0/Signs/Signatures.xml",
        "Doc_0/Signs/Sign_0/Signature.xml",
        "Doc_0/Signs/Sign_0/SignedValue.dat",
    }
    assert set(listed) == {"/" + name for name in expected}
    for name in expected:
        assert listed["/" + name] == _openssl_sm3(tmp_path, package.files[name]), name
    # the original's page and resources are protected as they were
    assert (
        package.files["Doc_0/Pages/Page_0/Content.xml"]
        == (read_package(original).files["Doc_0/Pages/Page_0/Content.xml"])
    )
    (stamp,) = info.findall("ofd:StampAnnot", NS)
    page_id = _xml(package, "Doc_0/Document.xml").xpath(
        "string(ofd:Pages/ofd:Page/@ID)", namespaces=NS
    )
    width, height = sm2_seal.width_mm, sm2_seal.height_mm
    assert stamp.get("PageRef") == page_id and stamp.get("ID") == "2"
    x, y, w, h = (float(v) for v in stamp.get("Boundary").split())
    assert (x + w / 2, y + h / 2, w, h) == pytest.approx((150, 200, width, height))
    assert info.findtext("ofd:Seal/ofd:BaseLoc", namespaces=NS) == "/Doc_0/Signs/Sign_0/Seal.esl"
    assert package.files["Doc_0/Signs/Sign_0/Seal.esl"] == sm2_seal.seal_structure
    assert signature.findtext("ofd:SignedValue", namespaces=NS) == (
        "/Doc_0/Signs/Sign_0/SignedValue.dat"
    )

    ses = gbt38540.parse_signature(package.files["Doc_0/Signs/Sign_0/SignedValue.dat"])
    assert ses.version == 4 and ses.sign_alg == SM3_WITH_SM2
    assert ses.seal.der == sm2_seal.seal_structure
    assert ses.data_hash == _openssl_sm3(tmp_path, signature_xml)
    assert ses.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"
    assert ses.time_stamp is not None  # our SM2 TSA's token over the signature value
    assert sm2_seal.certificate_der is not None
    pkeyutl_verify(tmp_path, "ofd", sm2_seal.certificate_der, ses.tbs_der, ses.signature)

    event = result.event
    assert event.action == "seal_ofd"
    assert event.digest == ses.data_hash and event.digest_algorithm == "sm3"


def test_a_second_seal_leaves_the_first_ones_references_intact(
    world: World,
    sm2_seal: SealView,
    cjk_font: Font,  # noqa: F811
    tmp_path: Path,
) -> None:
    once = _seal(world, sm2_seal, write_document(_document(cjk_font)), Position(1, 60, 200))
    other = _active(world, "sm2")
    twice = _seal(world, other, once, Position(1, 150, 200))
    first, second = read_package(once), read_package(twice)

    listing = _xml(second, "Doc_0/Signs/Signatures.xml")
    assert listing.xpath("string(ofd:MaxSignId)", namespaces=NS) == "4"
    assert [e.get("BaseLoc") for e in listing.xpath("ofd:Signature", namespaces=NS)] == [
        "/Doc_0/Signs/Sign_0/Signature.xml",
        "/Doc_0/Signs/Sign_1/Signature.xml",
    ]
    # every file the first signature protects is byte-identical after the second
    signature = _xml(first, "Doc_0/Signs/Sign_0/Signature.xml")
    for node in signature.iterfind("ofd:SignedInfo/ofd:References/ofd:Reference", NS):
        name = node.get("FileRef").lstrip("/")
        assert second.files[name] == first.files[name], name
        assert base64.b64decode(node.findtext("ofd:CheckValue", namespaces=NS)) == (
            _openssl_sm3(tmp_path, second.files[name])
        )
    # the second protects the first's signature files
    later = _xml(second, "Doc_0/Signs/Sign_1/Signature.xml")
    refs = {n.get("FileRef") for n in later.iterfind(".//ofd:Reference", NS)}
    assert {"/Doc_0/Signs/Sign_0/Signature.xml", "/Doc_0/Signs/Sign_0/SignedValue.dat"} <= refs
    assert "/Doc_0/Signs/Signatures.xml" not in refs
    stamp = later.find(".//ofd:StampAnnot", NS)
    assert stamp.get("ID") == "4"


def test_riding_seal_one_clipped_stamp_per_page(
    world: World,
    sm2_seal: SealView,
    cjk_font: Font,  # noqa: F811
) -> None:
    sealed = read_package(
        _seal(world, sm2_seal, write_document(_document(cjk_font, pages=3)), Riding())
    )
    page_ids = _xml(sealed, "Doc_0/Document.xml").xpath("ofd:Pages/ofd:Page/@ID", namespaces=NS)
    stamps = _xml(sealed, "Doc_0/Signs/Sign_0/Signature.xml").findall(".//ofd:StampAnnot", NS)
    assert [s.get("PageRef") for s in stamps] == list(page_ids)
    width, height = sm2_seal.width_mm, sm2_seal.height_mm
    slice_width = width / 3
    for i, stamp in enumerate(stamps):
        x, y, w, h = (float(v) for v in stamp.get("Boundary").split())
        cx, cy, cw, ch = (float(v) for v in stamp.get("Clip").split())
        assert (w, h) == pytest.approx((width, height))
        assert (cx, cy, cw, ch) == pytest.approx((i * slice_width, 0, slice_width, height))
        # the visible slice lies on the right edge of the 210 mm page
        assert x + cx + cw == pytest.approx(210)
        assert y + h / 2 == pytest.approx(297 / 2)


def test_seal_at_a_keyword(world: World, sm2_seal: SealView, cjk_font: Font) -> None:  # noqa: F811
    sealed = read_package(
        _seal(world, sm2_seal, write_document(_document(cjk_font)), Anchor(HOLDER[:4], 1, 0, 0))
    )
    stamp = _xml(sealed, "Doc_0/Signs/Sign_0/Signature.xml").find(".//ofd:StampAnnot", NS)
    x, y, w, h = (float(v) for v in stamp.get("Boundary").split())
    # HOLDER is drawn at (20, 40) + baseline (0, 5), 5 mm glyphs advancing 5 mm
    assert x + w / 2 == pytest.approx(20 + 4 * 5 / 2)
    assert y + h / 2 == pytest.approx(40 + 5 - 5 * 0.35)


def test_easyofd_renders_the_seal_picture_at_its_stamp(
    world: World,
    sm2_seal: SealView,
    cjk_font: Font,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pdftoppm = require_tool("pdftoppm")
    from easyofd import OFD

    sealed = _seal(world, sm2_seal, write_document(_document(cjk_font)), Position(1, 150, 200))
    monkeypatch.chdir(tmp_path)
    easyofd_font(cjk_font.data)
    reader = OFD()
    reader.read(sealed, fmt="binary")
    (tmp_path / "sealed.pdf").write_bytes(reader.to_pdf())
    subprocess.run([pdftoppm, "-r", "30", "-png", "-singlefile", "sealed.pdf", "page"], check=True)
    page = PILImage.open(tmp_path / "page.png").convert("RGB")
    width, height = page.size

    def red(box: tuple[float, float, float, float]) -> int:
        left, top, right, bottom = box
        crop = page.crop(
            (
                int(left / 210 * width),
                int(top / 297 * height),
                int(right / 210 * width),
                int(bottom / 297 * height),
            )
        )
        pixels: list[tuple[int, int, int]] = list(crop.get_flattened_data())  # type: ignore[arg-type]
        return sum(1 for r, g, b in pixels if r > 150 and g < 90 and b < 90)

    half = sm2_seal.width_mm / 2
    assert red((150 - half, 200 - half, 150 + half, 200 + half)) > 100
    assert red((10, 200 - half, 10 + 2 * half, 200 + half)) == 0


def test_refusals_name_the_defect_and_change_nothing(
    world: World,
    sm2_seal: SealView,
    cjk_font: Font,  # noqa: F811
) -> None:
    good = write_document(_document(cjk_font))
    sealer = _sealer(world)
    protected = read_package(_seal(world, sm2_seal, good))
    # a document whose signature protects the signature list takes no further seal
    files = dict(protected.files)
    text = files["Doc_0/Signs/Sign_0/Signature.xml"].replace(
        b"</ofd:References>",
        b'<ofd:Reference FileRef="/Doc_0/Signs/Signatures.xml">'
        b"<ofd:CheckValue>AA==</ofd:CheckValue></ofd:Reference></ofd:References>",
    )
    files["Doc_0/Signs/Sign_0/Signature.xml"] = text
    closed = write_package(OfdPackage(files))
    cases: list[tuple[OfdSealRequest, type[Exception], str]] = [
        (OfdSealRequest(sm2_seal.id, b""), InvalidArgument, "required"),
        (OfdSealRequest(sm2_seal.id, b"garbage, not a zip"), OfdMalformed, "not a zip"),
        (OfdSealRequest(sm2_seal.id, good[: len(good) // 2]), OfdMalformed, "package"),
        (
            OfdSealRequest(sm2_seal.id, good, placement=Position(5, 10, 10)),
            InvalidArgument,
            "the document has 1 pages",
        ),
        (
            OfdSealRequest(sm2_seal.id, good, placement=Anchor("不在文中")),
            InvalidArgument,
            "is not in the document",
        ),
        (
            OfdSealRequest(sm2_seal.id, good, placement=Riding()),
            InvalidArgument,
            "two pages or more",
        ),
        (OfdSealRequest(sm2_seal.id, closed), InvalidArgument, "no further signature"),
    ]
    for request, error, message in cases:
        with unchanged(world.db, world.keystore), pytest.raises(error, match=message):
            sealer.seal(world.rep, request)
    with unchanged(world.db, world.keystore), pytest.raises(PermissionDenied):
        sealer.seal(world.user, OfdSealRequest(sm2_seal.id, good))
    world.service.suspend(FILING, sm2_seal.id, "loss", "lost")
    with unchanged(world.db, world.keystore), pytest.raises(FailedPrecondition):
        sealer.seal(world.rep, OfdSealRequest(sm2_seal.id, good))


def test_a_zip_bomb_is_refused_before_it_is_inflated(world: World, sm2_seal: SealView) -> None:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("OFD.xml", b"<x/>")
        archive.writestr("Doc_0/bomb.xml", b"\0" * (40 * 1024 * 1024))
    with unchanged(world.db, world.keystore), pytest.raises(OfdTooLarge):
        _sealer(world).seal(world.rep, OfdSealRequest(sm2_seal.id, out.getvalue()))


def test_seal_ofd_over_grpc(
    world: World,
    sm2_seal: SealView,
    grpc_seal: GrpcHandle,
    cjk_font: Font,  # noqa: F811
) -> None:
    import grpc

    document = write_document(_document(cjk_font, pages=2))
    response: Any = grpc_seal.call(
        "SealOfd",
        seal_pb2.SealOfdRequest(
            seal_id=sm2_seal.id,
            ofd=document,
            placement=seal_pb2.SealPlacement(riding=seal_pb2.RidingSeal()),
            document_kind="contract",
            reason="合同盖章",
        ),
        world.rep,
    )
    assert response.signature_id == 1
    assert response.signature_file == "/Doc_0/Signs/Sign_0/Signature.xml"
    package = read_package(response.sealed_ofd)
    ses = gbt38540.parse_signature(package.files["Doc_0/Signs/Sign_0/SignedValue.dat"])
    assert response.data_hash.algorithm == common_pb2.DIGEST_ALGORITHM_SM3
    assert response.data_hash.value == ses.data_hash
    assert response.event.action == seal_pb2.SEAL_ACTION_SEAL_OFD
    stamps = _xml(package, "Doc_0/Signs/Sign_0/Signature.xml").findall(".//ofd:StampAnnot", NS)
    assert len(stamps) == 2

    history: Any = grpc_seal.call(
        "GetSealHistory",
        seal_pb2.GetSealHistoryRequest(seal_id=sm2_seal.id, include_uses=True),
        world.rep,
    )
    assert seal_pb2.SEAL_ACTION_SEAL_OFD in [e.action for e in history.events]

    grpc_seal.world = world
    denied: Any = grpc_seal.fails(
        "SealOfd", seal_pb2.SealOfdRequest(seal_id=sm2_seal.id, ofd=document), world.user
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    bad: Any = grpc_seal.fails(
        "SealOfd", seal_pb2.SealOfdRequest(seal_id=sm2_seal.id, ofd=b"PK\x03\x04oops"), world.rep
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ofd" in bad.details()


def test_a_lost_ofd_use_is_sealed_again_with_its_recorded_signing_time(
    world: World,
    sm2_seal: SealView,
    cjk_font: Font,  # noqa: F811
) -> None:
    """``reproduce``: the same Signature.xml (the use's recorded SignatureDateTime), so the
    same dataHash as the use's digest, a new signature value; refused for another document
    (before anything is signed) and for a use that recorded no signing time."""
    document = write_document(_document(cjk_font))
    request = OfdSealRequest(sm2_seal.id, document, placement=Position(1, 150, 200))
    first = _sealer(world).seal(world.rep, request)
    time.sleep(1.1)  # a later second: the signing time must come from the use's record
    again = _sealer(world).reproduce(world.rep, request, first.event.audit_seq)
    assert again.event == first.event
    assert again.sealed.signing_time == first.sealed.signing_time
    assert again.sealed.data_hash == first.sealed.data_hash == first.event.digest
    old, new = read_package(first.sealed.ofd), read_package(again.sealed.ofd)
    xml = "Doc_0/Signs/Sign_0/Signature.xml"
    assert new.files[xml] == old.files[xml]
    value = new.files["Doc_0/Signs/Sign_0/SignedValue.dat"]
    assert value != old.files["Doc_0/Signs/Sign_0/SignedValue.dat"]
    assert gbt38540.parse_signature(value).data_hash == first.event.digest

    other = OfdSealRequest(
        sm2_seal.id, write_document(_document(cjk_font, pages=2)), placement=Position(1, 150, 200)
    )
    context = world.service.authorise_use(world.rep, sm2_seal.id, "")
    legacy = world.service.record_use(world.rep, context, Use("seal_ofd", "", "sm3", b"\1" * 32))
    with unchanged(world.db, world.keystore):
        with pytest.raises(SealRuleViolation, match="recorded another document"):
            _sealer(world).reproduce(world.rep, other, first.event.audit_seq)
        with pytest.raises(SealRuleViolation, match="no signing time"):
            _sealer(world).reproduce(world.rep, request, legacy.audit_seq)
