"""VerifyPdf with an intermediate outside its validity (issue #23 item 3).

A PDF signed (pyHanko's own signer, time-stamped by our TSA) by a leaf of an external
intermediate, the chain carried in the signature: the intermediate is judged at the signing
time like the leaf, so an intermediate that had expired by then makes the signature INVALID
even though the leaf itself was within its validity.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from seal.signing import CaTimeStamper
from tests.seal.conftest import World, free_port, one_page_pdf
from tests.verify.test_boundaries_certificates import NOW, Hierarchy
from verify.pdf import verify_pdf
from verify.report import ReasonCode, Verdict
from verify.service import VerifyConfig, VerifyContext

DER = serialization.Encoding.DER


def _signed(world: World, h: Hierarchy) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = h.leaf(NOW - timedelta(days=30), NOW + timedelta(days=30), key)
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(leaf.public_bytes(DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        ),
        cert_registry=SimpleCertificateStore.from_certs(
            [asn1_x509.Certificate.load(h.intermediate.public_bytes(DER))]
        ),
    )
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(one_page_pdf())),
        signers.PdfSignatureMetadata(
            field_name="External", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
        ),
        signer=signer,
        timestamper=CaTimeStamper(world.seal_authority),
    )
    signed: bytes = out.getvalue()
    return signed


@pytest.mark.parametrize("expired", [False, True])
def test_an_intermediate_expired_at_signing_time_invalidates_the_signature(
    vworld: World, tmp_path: Path, expired: bool
) -> None:
    base = f"http://127.0.0.1:{free_port()}"  # nothing serves it: revocation stays unknown
    h = Hierarchy(base, int_not_after=NOW - timedelta(days=1)) if expired else Hierarchy(base)
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(h.root.public_bytes(serialization.Encoding.PEM))
    context = VerifyContext(
        vworld.db,
        vworld.keystore,
        vworld.authority,
        config=VerifyConfig(trust_anchors=str(anchors), fetch_timeout_seconds=1.0),
        seals=vworld.service,
    )
    try:
        report = verify_pdf(context, _signed(vworld, h))
        [sig] = report.signatures
        assert sig.intact
        expired_reasons = [r for r in report.reasons if r.code is ReasonCode.CERTIFICATE_EXPIRED]
        if expired:
            assert report.verdict is Verdict.INVALID
            assert expired_reasons, report.reasons
            assert all("chain[1]" in r.subject for r in expired_reasons), expired_reasons
            assert sig.certificate is not None and not sig.certificate.within_validity_period
        else:
            assert not expired_reasons, report.reasons
            assert report.verdict is Verdict.INDETERMINATE  # only the revocation is unknown
    finally:
        context.close()
