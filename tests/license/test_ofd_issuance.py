"""Licences in OFD (issue 17 item 3) over the production servicer: a licence type names its
document formats; IssueLicense makes and seals each (the PDF PAdES, the OFD with a GB/T 38540
signature by the same department seal), records one seal use per document, and
GetLicenseDocument hands out the format asked for."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import grpc

from govtrust.principal import Principal
from govtrust.v1 import license_pb2
from license import catalogue
from seal.ofd.package import read_package
from tests.license.test_grpc import violations
from tests.license.test_production import DEPT, Prod, prod  # noqa: F401
from tests.seal import gbt38540
from tests.unchanged import unchanged

ADMIN = Principal("user", "admin", frozenset({"admin"}))
PDF, OFD = license_pb2.LICENSE_DOCUMENT_FORMAT_PDF, license_pb2.LICENSE_DOCUMENT_FORMAT_OFD


def _formats(prod: Prod, *formats: str) -> None:  # noqa: F811
    with prod.platform.db.transaction() as session:
        business = catalogue.get_type(session, catalogue.BUSINESS_LICENCE_CODE)
        catalogue.define_type(
            session, ADMIN, replace(business, document_formats=formats), replace=True
        )


def test_a_type_issued_as_pdf_and_ofd(prod: Prod) -> None:  # noqa: F811
    _formats(prod, "pdf", "ofd")
    licence_type: Any = prod.call(
        "GetLicenseType",
        license_pb2.GetLicenseTypeRequest(type_code=catalogue.BUSINESS_LICENCE_CODE),
    )
    assert list(licence_type.license_type.document_formats) == [PDF, OFD]

    issued = prod.issue()
    assert issued.document_digest.value and issued.ofd_document_digest.value
    request = license_pb2.GetLicenseDocumentRequest
    pdf: Any = prod.call("GetLicenseDocument", request(identifier=issued.identifier))
    assert pdf.media_type == "application/pdf" and pdf.document.startswith(b"%PDF-")
    ofd: Any = prod.call("GetLicenseDocument", request(identifier=issued.identifier, format=OFD))
    assert ofd.media_type == "application/ofd" and ofd.filename.endswith(".ofd")
    assert ofd.digest.value == hashlib.sha256(ofd.document).digest()
    assert ofd.digest.value == issued.ofd_document_digest.value

    package = read_package(ofd.document)
    custom = package.files["OFD.xml"].decode()
    assert issued.identifier in custom  # ZZBS among the GB/T 36903 metadata
    ses = gbt38540.parse_signature(package.files["Doc_0/Signs/Sign_0/SignedValue.dat"])
    assert ses.seal.der == prod.seal.seal_structure
    assert (
        ses.data_hash
        == hashlib.new("sm3", package.files["Doc_0/Signs/Sign_0/Signature.xml"]).digest()
    )

    # one use per document, each with what identifies it
    events, _ = prod.runtime.seals.service.history(prod.seal.id, include_uses=True, page_size=50)
    uses = {e.action: e for e in events if e.reason == f"licence {issued.identifier}"}
    assert uses["seal_pdf"].digest == issued.document_digest.value
    assert (uses["seal_ofd"].digest_algorithm, uses["seal_ofd"].digest) == ("sm3", ses.data_hash)


def test_ofd_only_and_the_format_that_is_not_there(prod: Prod) -> None:  # noqa: F811
    _formats(prod, "ofd")
    only_ofd = prod.issue()
    assert not only_ofd.HasField("document_digest") and only_ofd.ofd_document_digest.value
    request = license_pb2.GetLicenseDocumentRequest
    default: Any = prod.call("GetLicenseDocument", request(identifier=only_ofd.identifier))
    assert default.media_type == "application/ofd"
    with unchanged(prod.platform.db):
        missing: Any = prod.fails(
            "GetLicenseDocument", request(identifier=only_ofd.identifier, format=PDF)
        )
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "PDF" in missing.details()
    bad: Any = prod.fails(
        "GetLicenseDocument",
        request(identifier=only_ofd.identifier, format=7),  # type: ignore[arg-type]
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_type_with_bad_formats_is_refused(prod: Prod) -> None:  # noqa: F811
    business = prod.call(
        "GetLicenseType",
        license_pb2.GetLicenseTypeRequest(type_code=catalogue.BUSINESS_LICENCE_CODE),
    ).license_type  # type: ignore[attr-defined]
    business.type_code = catalogue.SAMR_CODE + "009"
    for formats in ([PDF, PDF], [5]):
        del business.document_formats[:]
        business.document_formats.extend(formats)
        with unchanged(prod.platform.db):
            refused: Any = prod.fails(
                "DefineLicenseType",
                license_pb2.DefineLicenseTypeRequest(license_type=business),
                ADMIN,
            )
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert any("document_formats" in field for field in violations(refused)), formats


def test_a_licence_ofd_checked_by_verify_license_and_the_public_page(prod: Prod) -> None:  # noqa: F811
    """The production runtime's roots carry the SM2 root, so an SM2-sealed OFD checks through
    LicenseService.VerifyLicense and the public page; a changed page does not."""
    from govtrust.v1 import common_pb2
    from license import public
    from seal.ofd.package import OfdPackage, write_package

    subjects = {root.subject.rfc4514_string() for root in prod.runtime.roots}
    assert len(prod.runtime.roots) == 2 and any("SM2" in s for s in subjects), subjects
    _formats(prod, "ofd")
    issued = prod.issue()
    request = license_pb2.GetLicenseDocumentRequest
    ofd: bytes = prod.call(
        "GetLicenseDocument", request(identifier=issued.identifier, format=OFD)
    ).document  # type: ignore[attr-defined]
    verify = license_pb2.LicenseServiceVerifyLicenseRequest
    report: Any = prod.call(
        "VerifyLicense", verify(evidence=license_pb2.LicenseEvidence(document=ofd))
    ).report  # type: ignore[attr-defined]
    assert report.verdict == common_pb2.VERDICT_VALID, report
    assert report.license.identifier == issued.identifier

    view = public.view_document(prod.runtime.service, prod.runtime.roots, ofd)
    assert (view.verdict.name, view.checked, view.identifier) == (
        "VALID",
        "ofd",
        issued.identifier,
    )

    files = dict(read_package(ofd).files)
    content = "Doc_0/Pages/Page_0/Content.xml"
    files[content] = files[content].replace(b"</ofd:TextCode>", b" </ofd:TextCode>", 1)
    changed: Any = prod.call(
        "VerifyLicense",
        verify(evidence=license_pb2.LicenseEvidence(document=write_package(OfdPackage(files)))),
    ).report  # type: ignore[attr-defined]
    assert changed.verdict == common_pb2.VERDICT_INVALID
    assert changed.reasons[0].code == common_pb2.REASON_CODE_DISALLOWED_MODIFICATION
    assert content in changed.reasons[0].message
