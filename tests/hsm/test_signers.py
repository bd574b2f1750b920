"""Signer adapters: asn1crypto-built certificates and pyHanko PDF signatures over any KeyStore."""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import keys, pem, x509
from cryptography import x509 as cx509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from govtrust.db import Database
from govtrust.errors import InvalidArgument
from hsm import (
    KeyAlgorithm,
    KeyRef,
    KeyStore,
    KeyStoreSigner,
    SignatureScheme,
    UnsupportedScheme,
    sign_tbs,
    signed_digest_algorithm,
    tbs_signer,
)
from tests.conftest import require_tool
from tests.unchanged import unchanged


def self_signed_certificate(
    keystore: KeyStore, ref: KeyRef, scheme: SignatureScheme | None = None
) -> x509.Certificate:
    """A self-signed certificate built with asn1crypto and signed through the key store."""
    signer = tbs_signer(keystore, ref, scheme)
    name = x509.Name.build(
        {"country_name": "CN", "organization_name": "govtrust tests", "common_name": ref.label}
    )
    now = datetime.now(UTC).replace(microsecond=0)
    spki = keys.PublicKeyInfo.load(ref.public_key_der)
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": int.from_bytes(os.urandom(16), "big") >> 1,
            "signature": signer.algorithm,
            "issuer": name,
            "validity": {
                "not_before": x509.Time({"utc_time": now - timedelta(hours=1)}),
                "not_after": x509.Time({"utc_time": now + timedelta(days=1)}),
            },
            "subject": name,
            "subject_public_key_info": spki,
            "extensions": [
                {
                    "extn_id": "basic_constraints",
                    "critical": True,
                    "extn_value": {"ca": True},
                },
                {
                    "extn_id": "key_usage",
                    "critical": True,
                    "extn_value": {"digital_signature", "non_repudiation", "key_cert_sign"},
                },
                {
                    "extn_id": "key_identifier",
                    "critical": False,
                    "extn_value": hashlib.sha1(
                        spki["public_key"].contents, usedforsecurity=False
                    ).digest(),
                },
            ],
        }
    )
    signature, algorithm = signer(tbs.dump())
    return x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    )


CERT_CASES = [
    (KeyAlgorithm.EC_P256, None),
    (KeyAlgorithm.EC_P384, None),
    (KeyAlgorithm.RSA_2048, None),
    (KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PSS_SHA256),
    (KeyAlgorithm.RSA_3072, SignatureScheme.RSA_PSS_SHA384),
]


@pytest.mark.parametrize(("algorithm", "scheme"), CERT_CASES)
def test_self_signed_certificate_verifies(
    keystore: KeyStore,
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme | None,
    tmp_path: Path,
) -> None:
    ref = keystore.generate(f"root {algorithm.value}", algorithm)
    cert = self_signed_certificate(keystore, ref, scheme)
    der = cert.dump()

    parsed = cx509.load_der_x509_certificate(der)
    parsed.verify_directly_issued_by(parsed)  # signature checked by cryptography

    openssl = require_tool("openssl")
    path = tmp_path / "root.pem"
    path.write_bytes(pem.armor("CERTIFICATE", der))
    result = subprocess.run(
        [openssl, "verify", "-x509_strict", "-CAfile", str(path), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{path}: OK" in result.stdout


def test_signature_algorithm_identifiers() -> None:
    ecdsa = signed_digest_algorithm(SignatureScheme.ECDSA_SHA384)
    assert ecdsa.dump().hex() == "300a06082a8648ce3d040303"  # no parameters (RFC 5758)
    rsa = signed_digest_algorithm("rsa-pkcs1v15-sha256")
    assert rsa.dump().hex() == "300d06092a864886f70d01010b0500"  # NULL parameters (RFC 4055)
    pss = signed_digest_algorithm(SignatureScheme.RSA_PSS_SHA256)
    assert pss["algorithm"].native == "rsassa_pss"
    assert pss["parameters"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert pss["parameters"]["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
    assert pss["parameters"]["salt_length"].native == 32


def test_sign_tbs_rejects_mismatched_scheme(database: Database, keystore: KeyStore) -> None:
    ref = keystore.generate("ec", KeyAlgorithm.EC_P256)
    signature, algorithm = sign_tbs(keystore, ref.key_id, b"\x30\x00")
    assert algorithm["algorithm"].native == "sha256_ecdsa" and signature
    with unchanged(database, keystore), pytest.raises(UnsupportedScheme):
        sign_tbs(keystore, ref, b"\x30\x00", SignatureScheme.RSA_PKCS1V15_SHA256)


def _blank_pdf() -> BytesIO:
    writer = PdfFileWriter()
    page = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(n) for n in (0, 0, 595, 842)]
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(),
        }
    )
    writer.insert_page(page)
    out = BytesIO()
    writer.write(out)
    out.seek(0)
    return out


PDF_CASES = [
    (KeyAlgorithm.EC_P256, None),
    (KeyAlgorithm.EC_P384, None),
    (KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PSS_SHA256),
    (KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PKCS1V15_SHA384),
]


@pytest.mark.parametrize(("algorithm", "scheme"), PDF_CASES)
def test_pdf_signed_with_pyhanko_validates(
    keystore: KeyStore, algorithm: KeyAlgorithm, scheme: SignatureScheme | None
) -> None:
    ref = keystore.generate(f"seal {algorithm.value}", algorithm)
    cert = self_signed_certificate(keystore, ref, scheme)
    signer = KeyStoreSigner(keystore, ref, cert, scheme=scheme)

    signed = signers.sign_pdf(
        IncrementalPdfFileWriter(_blank_pdf()),
        signers.PdfSignatureMetadata(field_name="Seal"),
        signer=signer,
    )

    reader = PdfFileReader(signed)
    (embedded,) = reader.embedded_signatures
    status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[cert]))
    assert status.intact and status.valid and status.trusted, status.summary()
    assert status.bottom_line
    assert status.signing_cert.dump() == cert.dump()
    expected = signer.scheme
    mechanism = embedded.signer_info["signature_algorithm"]
    assert mechanism.dump() == signed_digest_algorithm(expected).dump()


def test_pyhanko_signer_rejects_a_certificate_for_another_key(
    database: Database, keystore: KeyStore
) -> None:
    ref = keystore.generate("mine", KeyAlgorithm.EC_P256)
    other = keystore.generate("other", KeyAlgorithm.EC_P256)
    cert = self_signed_certificate(keystore, other)
    with (
        unchanged(database, keystore),
        pytest.raises(InvalidArgument, match="not the public key of key"),
    ):
        KeyStoreSigner(keystore, ref, cert)


def test_pyhanko_signer_refuses_another_digest(database: Database, keystore: KeyStore) -> None:
    import asyncio

    ref = keystore.generate("p256", KeyAlgorithm.EC_P256)
    signer = KeyStoreSigner(keystore, ref, self_signed_certificate(keystore, ref))
    with unchanged(database, keystore), pytest.raises(SigningError, match="needs digest sha256"):
        asyncio.run(signer.async_sign_raw(b"data", "sha512"))
    placeholder = asyncio.run(signer.async_sign_raw(b"data", "sha256", dry_run=True))
    assert len(placeholder) == 72
