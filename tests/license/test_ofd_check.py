"""The licence OFD checked on its own (license.ofd_check): the department seal's GB/T 38540
signature (SM2 with an SM2 time-stamp, or ECDSA), the attached signed data and QR payload, and
everything that must fail: changed pages and attachments, a seal of another company or of
another kind, no seal, no time-stamp, an untrusted chain, garbage and zip bombs."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

import pytest
from cryptography import x509

from govtrust.errors import ResourceExhausted
from idp.types import IdentityRef
from license.checking import State, Verdict
from license.days import licence_day
from license.departments import DepartmentSealSigners
from license.document import LicenceDocuments, _page
from license.ofd_check import check_ofd_reading, is_ofd
from license.ofd_writer import CA_FILE, ofd_package
from license.pdf_reader import EmbeddedLicence
from license.status_list import LicenceStatus
from seal.errors import OfdTooLarge
from seal.lifecycle import Application, Making, UseContext
from seal.ofd.package import OfdPackage, read_package, write_package
from seal.ofd.reader import read_document
from seal.placement import Position
from seal.types import SealKind
from tests.license.test_document import FIELDS, Licence, _issue
from tests.license.test_document import licence as licence
from tests.seal.conftest import (
    FILING,
    MAKER,
    OTHER_USCC,
    REGISTRAR,
    REVIEWER,
    USCC,
    World,
    world,  # noqa: F401 - fixture
)
from tests.unchanged import unchanged

CONTENT = "Doc_0/Pages/Page_0/Content.xml"


def _sm2_roots(w: World) -> list[x509.Certificate]:
    return [
        x509.load_der_x509_certificate(w.seal_authority.chain()[-1]),
        x509.load_der_x509_certificate(w.seal_authority.chain(sm2=True)[-1]),
    ]


def _seal(w: World, company_id: str, kind: SealKind, algorithm: str) -> str:
    s = w.service
    seal = s.apply(w.rep, Application(IdentityRef(id=company_id), kind, key_algorithm=algorithm))
    s.review(REVIEWER, seal.id, True, "ok")
    s.make(MAKER, seal.id, Making())
    s.file(FILING, seal.id, "", "")
    return s.issue(FILING, seal.id, "").id


@pytest.fixture
def sm2_licence(world: World) -> Licence:  # noqa: F811
    """A licence of the department whose official seal is SM2 (the production default)."""
    _seal(world, world.company_id, SealKind.OFFICIAL, "sm2")
    signers = DepartmentSealSigners(world.service, world.keystore)
    context = signers.context(USCC)
    assert context.ses_sm2
    out = Licence(
        world, LicenceDocuments(world.sealer), context, _issue(world), _sm2_roots(world), {}
    )
    out.lists = out.with_status(LicenceStatus.VALID)
    return out


def _context(w: World, seal_id: str) -> UseContext:
    return w.service.authorise_use(w.rep, seal_id, "licence")


def _with(data: bytes, name: str, value: bytes) -> bytes:
    files = dict(read_package(data).files)
    files[name] = value
    return write_package(OfdPackage(files))


def _attachment(data: bytes, name: str) -> str:
    """The package path of the attachment ``name`` (files are named by position)."""
    names = [a.name for a in read_document(read_package(data)).document.attachments]
    extension = name.rpartition(".")[2]
    return f"Doc_0/Attachs/attachment_{names.index(name)}.{extension}"


def test_a_sealed_sm2_licence_ofd_is_valid(sm2_licence: Licence) -> None:
    lic = sm2_licence
    sealed = lic.documents.make_ofd(lic.doc, lic.context)
    assert is_ofd(sealed.ofd) and sealed.digest_algorithm == "sm3"
    read = check_ofd_reading(sealed.ofd, lic.roots, lic.lists)
    check = read.check
    assert check.verdict is Verdict.VALID and check.state is State.VALID, check.reasons
    assert check.identifier == lic.doc.metadata.identifier
    assert check.holder_name == FIELDS["KZ_MC"]
    assert read.embedded == EmbeddedLicence(lic.doc.signed_data, lic.doc.qr_payload)
    # the CA certificates travel in the OFD: with only the roots, nothing is fetched
    files = read_package(sealed.ofd).files
    assert b"BEGIN CERTIFICATE" in files[_attachment(sealed.ofd, CA_FILE)]

    # the status comes from the status list
    revoked = check_ofd_reading(sealed.ofd, lic.roots, lic.with_status(LicenceStatus.REVOKED))
    assert revoked.check.verdict is Verdict.INVALID and revoked.check.state is State.REVOKED
    assert revoked.check.reasons == ("REVOKED",)
    unknown = check_ofd_reading(sealed.ofd, lic.roots, {}).check
    assert unknown.verdict is Verdict.INDETERMINATE and "STATUS_UNKNOWN" in unknown.reasons

    # without the SM2 root the seal does not chain (the JWS, P-256, still would)
    ecdsa_only = check_ofd_reading(sealed.ofd, lic.roots[:1], lic.lists).check
    assert ecdsa_only.verdict is Verdict.INVALID
    assert ecdsa_only.reasons[0] == "OFD_UNTRUSTED", ecdsa_only.reasons
    assert ecdsa_only.identifier == lic.doc.metadata.identifier  # the licence is still named


def test_an_ecdsa_seal_licence_ofd_is_valid(licence: Licence) -> None:
    sealed = licence.documents.make_ofd(licence.doc, licence.context)
    assert sealed.digest_algorithm == "sha256"
    check = check_ofd_reading(sealed.ofd, licence.roots, licence.lists).check
    assert check.verdict is Verdict.VALID, check.reasons


def test_changes_after_sealing_are_reported_naming_the_file(sm2_licence: Licence) -> None:
    lic = sm2_licence
    sealed = lic.documents.make_ofd(lic.doc, lic.context).ofd
    content = read_package(sealed).files[CONTENT]
    at = content.index(FIELDS["KZ_MC"].encode())
    changed = bytearray(content)
    changed[at + 3 : at + 6] = "北".encode()  # one character of the holder's name
    check = check_ofd_reading(_with(sealed, CONTENT, bytes(changed)), lic.roots, lic.lists).check
    assert check.verdict is Verdict.INVALID
    assert check.reasons[0] == "OFD_MODIFIED" and CONTENT in check.reasons[1], check.reasons

    # a file added, and one removed
    added = check_ofd_reading(_with(sealed, "Doc_0/extra.xml", b"<x/>"), lic.roots, lic.lists)
    assert (
        added.check.reasons[0] == "OFD_MODIFIED"
        and "Doc_0/extra.xml added" in (added.check.reasons[1])
    )
    files = dict(read_package(sealed).files)
    del files["Doc_0/Signs/Sign_0/Seal.esl"]  # protected, not needed to read the page
    removed = check_ofd_reading(write_package(OfdPackage(files)), lic.roots, lic.lists).check
    assert removed.reasons[0] == "OFD_MODIFIED" and "Seal.esl removed" in removed.reasons[1]
    del files["Doc_0/Res/font_0.ttf"]  # a page that cannot be read at all
    assert check_ofd_reading(write_package(OfdPackage(files)), lic.roots, lic.lists).check.reasons[
        0
    ] == ("MALFORMED")

    # Signature.xml changed: the SES_Signature's dataHash no longer matches
    signature = "Doc_0/Signs/Sign_0/Signature.xml"
    xml = read_package(sealed).files[signature].replace(b"govtrust", b"govtrusT", 1)
    check = check_ofd_reading(_with(sealed, signature, xml), lic.roots, lic.lists).check
    assert check.reasons[0] == "OFD_SIGNATURE_INVALID", check.reasons


def test_attachments_of_another_licence_are_refused(sm2_licence: Licence) -> None:
    lic = sm2_licence
    sealed = lic.documents.make_ofd(lic.doc, lic.context).ofd
    other = _issue(lic.world, serial="20230000999")
    # swapped into the sealed package: the seal no longer covers them
    swapped = _with(sealed, _attachment(sealed, "licence.jws"), other.signed_data.encode())
    swapped = _with(swapped, _attachment(sealed, "licence-qr.txt"), other.qr_payload.encode())
    read = check_ofd_reading(swapped, lic.roots, lic.lists)
    assert read.check.verdict is Verdict.INVALID
    assert read.check.reasons[0] == "OFD_MODIFIED", read.check.reasons
    assert f"{_attachment(sealed, 'licence.jws')} changed" in read.check.reasons[1]
    assert read.embedded is not None and read.embedded.signed_data == other.signed_data

    # garbage in place of the signed data: the change is what is reported
    broken = _with(sealed, _attachment(sealed, "licence.jws"), b"not.a.jws")
    check = check_ofd_reading(broken, lic.roots, lic.lists).check
    assert check.reasons[0] == "OFD_MODIFIED" and "attachment_0.jws changed" in check.reasons[1]

    # sealed that way by the department: the QR payload describes another licence
    mixed = replace(lic.doc, qr_payload=other.qr_payload)
    check = check_ofd_reading(
        lic.documents.make_ofd(mixed, lic.context).ofd, lic.roots, lic.lists
    ).check
    assert check.verdict is Verdict.INVALID and check.reasons[0] == "QR_MISMATCH", check.reasons


def test_a_seal_of_another_company_or_kind_is_a_signer_mismatch(sm2_licence: Licence) -> None:
    lic = sm2_licence
    w = lic.world
    other = w.registry.register_legal_person(
        REGISTRAR,
        uscc=OTHER_USCC,
        name="北京另一公司",
        legal_representative=IdentityRef(id=w.rep.citizen_id),
    )
    foreign = _seal(w, other.id, SealKind.OFFICIAL, "sm2")
    sealed = lic.documents.make_ofd(lic.doc, _context(w, foreign)).ofd
    check = check_ofd_reading(sealed, lic.roots, lic.lists).check
    assert check.verdict is Verdict.INVALID
    assert check.reasons[0] == "OFD_SIGNER_MISMATCH", check.reasons
    assert "another organisation" in check.reasons[1]

    # the department's own contract seal is not its official seal
    contract = _seal(w, w.company_id, SealKind.CONTRACT, "sm2")
    sealed = lic.documents.make_ofd(lic.doc, _context(w, contract)).ofd
    check = check_ofd_reading(sealed, lic.roots, lic.lists).check
    assert check.reasons[0] == "OFD_SIGNER_MISMATCH", check.reasons
    assert "not the official seal" in check.reasons[1]


def test_unsealed_untimestamped_and_later_seals(sm2_licence: Licence) -> None:
    lic = sm2_licence
    unsealed = lic.documents.render_ofd(lic.doc, lic.context.seal)
    read = check_ofd_reading(unsealed, lic.roots, lic.lists)
    assert read.check.reasons[0] == "OFD_UNSEALED" and read.embedded is not None

    page = _page(lic.doc, lic.context.seal)
    package = ofd_package(page, lic.doc, licence_day(), lic.documents._certificates())
    x, y = page.layout.seal_centre
    bare = lic.documents.seal_ofd.sign(
        lic.context, read_document(package), Position(1, x, y), timestamp=False
    )
    check = check_ofd_reading(bare.ofd, lic.roots, lic.lists).check
    assert check.reasons[0] == "OFD_TIMESTAMP_INVALID", check.reasons

    # a second seal added later leaves the first intact: still valid
    sealed = lic.documents.make_ofd(lic.doc, lic.context).ofd
    contract = _seal(lic.world, lic.world.company_id, SealKind.CONTRACT, "sm2")
    twice = lic.documents.seal_ofd.sign(
        _context(lic.world, contract),
        read_document(read_package(sealed)),
        Position(1, 40, 40),
    ).ofd
    assert len([p for p in read_package(twice).files if p.endswith("SignedValue.dat")]) == 2
    check = check_ofd_reading(twice, lic.roots, lic.lists).check
    assert check.verdict is Verdict.VALID, check.reasons


def test_a_time_stamp_of_another_signature_is_refused(sm2_licence: Licence) -> None:
    """The timeStamp lies outside TBS_Sign (and SignedValue.dat outside the references): one
    taken from another sealing leaves the seal signature valid but is not over its value."""
    from seal import structures

    lic = sm2_licence
    sealed = lic.documents.make_ofd(lic.doc, lic.context).ofd
    other = lic.documents.make_ofd(_issue(lic.world, serial="20230000888"), lic.context).ofd
    where = "Doc_0/Signs/Sign_0/SignedValue.dat"
    ses = structures.SesSignature.load(read_package(sealed).files[where])
    foreign = structures.SesSignature.load(read_package(other).files[where])
    assert ses["time_stamp"].native != foreign["time_stamp"].native
    ses["time_stamp"] = foreign["time_stamp"].native
    check = check_ofd_reading(_with(sealed, where, ses.dump(force=True)), lic.roots, lic.lists)
    assert check.check.reasons[0] == "OFD_TIMESTAMP_INVALID", check.check.reasons
    assert "not over the seal's signature value" in check.check.reasons[1]


def test_garbage_truncated_non_licence_and_zip_bombs(sm2_licence: Licence) -> None:
    lic = sm2_licence
    sealed = lic.documents.make_ofd(lic.doc, lic.context).ofd
    no_licence = io.BytesIO()
    with zipfile.ZipFile(no_licence, "w") as archive:
        for name, data in read_package(sealed).files.items():
            if name.endswith(".jws"):
                continue
            archive.writestr(name, data)
    with unchanged(lic.world.db, lic.world.keystore):
        for bad in (b"PK\x03\x04garbage", sealed[: len(sealed) // 2], b"", no_licence.getvalue()):
            read = check_ofd_reading(bad, lic.roots, lic.lists)
            assert read.check.verdict is Verdict.INVALID
            assert read.check.reasons[0] == "MALFORMED", read.check.reasons
            assert read.embedded is None

        bomb = io.BytesIO()
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("OFD.xml", b"<x/>")
            archive.writestr("Doc_0/bomb.xml", b"\0" * (40 * 1024 * 1024))
        assert len(bomb.getvalue()) < 100 * 1024
        with pytest.raises(OfdTooLarge) as raised:
            check_ofd_reading(bomb.getvalue(), lic.roots, lic.lists)
        assert isinstance(raised.value, ResourceExhausted)
