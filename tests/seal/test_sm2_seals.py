"""SM2 seals (issue 16 item 3): applied → made → used over gRPC; the SESeal and SES_Signature read
by a test-only GB/T 38540 reader (tests/seal/gbt38540.py, not ``seal.structures``) and their SM2
signatures judged by openssl 3; the SES time-stamp from our SM2 TSA, read by openssl; PDF
sealing with the seal's P-256 key; one lifecycle for both keys; a PKCS#11 store without SM2
refuses SM2 seals cleanly.

OpenSSL 3.0's ``ts -verify`` checks SM2 token signatures with an empty signer ID
(docs/standards.md, "SM2 and openssl"), so the token's SM2 signature is checked with ``openssl
pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:1234567812345678`` over its signed attributes,
its chain link with ``openssl verify -vfyopt distid:… -partial_chain``, and ``openssl ts -reply
-token_in -text`` shows its SM3 imprint of the signature value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, x509

from govtrust.db import Database
from govtrust.errors import FailedPrecondition, InvalidArgument
from govtrust.v1 import common_pb2, seal_pb2
from hsm import KeyDestroyed, Pkcs11KeyStore
from hsm.keystore import SignatureScheme
from hsm.sm2 import SM2_CURVE_OID, SM3_OID, SM3_WITH_SM2_OID
from idp.types import IdentityRef
from seal import structures
from seal.errors import DataHashMismatch
from seal.lifecycle import Application, Making
from seal.pdf import PdfSealRequest
from seal.placement import Position
from seal.signdata import DataRequest, SignData
from seal.types import PadesLevel, SealKind
from tests.ca.conftest import ca_softhsm_token, openssl
from tests.ca.test_sm2 import pkeyutl_verify, verify_link
from tests.seal import gbt38540
from tests.seal.conftest import FILING, MAKER, REVIEWER, GrpcHandle, World, one_page_pdf, open_world
from tests.seal.test_grpc_lifecycle import OPERATIONS
from tests.seal.test_pdf import _pyhanko
from tests.unchanged import unchanged

__all__ = ["ca_softhsm_token"]  # the SoftHSM2 token fixture, shared with tests/ca

P256_OID = "1.2.840.10045.3.1.7"
DATA = "合同正文 — 国密电子签章".encode() * 50


def _curve(certificate_der: bytes) -> str:
    spki = x509.Certificate.load(certificate_der)["tbs_certificate"]["subject_public_key_info"]
    return str(spki["algorithm"]["parameters"].chosen.dotted)


def _sm2_seal_over_grpc(world: World, grpc_seal: GrpcHandle) -> seal_pb2.Seal:
    owner = common_pb2.IdentityRef(id=world.company_id)
    applied = grpc_seal.call(
        "ApplySeal",
        seal_pb2.ApplySealRequest(
            owner=owner,
            kind=common_pb2.SEAL_KIND_CONTRACT,
            key_algorithm=common_pb2.KEY_ALGORITHM_SM2,
        ),
        world.rep,
    ).seal  # type: ignore[attr-defined]
    assert applied.key_algorithm == common_pb2.KEY_ALGORITHM_SM2
    for step in ("review", "make", "file", "issue"):
        method, build, principal = OPERATIONS[step]
        grpc_seal.call(method, build(applied.id), principal)
    return grpc_seal.call(  # type: ignore[no-any-return]
        "GetSeal", seal_pb2.GetSealRequest(seal_id=applied.id), FILING
    ).seal  # type: ignore[attr-defined]


def test_sm2_seal_applied_made_used_over_grpc_judged_by_an_independent_reader_and_openssl(
    world: World, grpc_seal: GrpcHandle, tmp_path: Path
) -> None:
    seal = _sm2_seal_over_grpc(world, grpc_seal)
    assert seal.status == common_pb2.SEAL_STATUS_ACTIVE
    assert seal.key_algorithm == common_pb2.KEY_ALGORITHM_SM2
    # the SM2 certificate from the SM2 seal CA, the P-256 one for PDF from the ECDSA seal CA
    sm2_cert, pdf_cert = seal.certificate.der, seal.pdf_certificate.der
    assert _curve(sm2_cert) == SM2_CURVE_OID and _curve(pdf_cert) == P256_OID
    sm2_chain = world.seal_authority.chain(sm2=True)
    verify_link(tmp_path, "seal-cert", sm2_chain[0], sm2_cert)

    # the SESeal, read from the standard's ASN.1 by the test-only reader
    parsed = gbt38540.parse_seal(seal.seal_structure)
    assert parsed.header == ("ES", 4, "govtrust") and parsed.es_id == seal.id
    assert parsed.cert_list_type == 1 and parsed.certs == (sm2_cert,)
    assert parsed.sign_alg == SM3_WITH_SM2_OID == "1.2.156.10197.1.501"
    # made by the seal-making unit's SM2 organisation certificate (SM2 legal-person CA)
    maker = x509.Certificate.load(parsed.maker_cert)
    assert _curve(parsed.maker_cert) == SM2_CURVE_OID
    assert "organization_identifier" in maker.subject.native
    legal_person_ca = world.authority.hierarchy.get("sm2-legal-person").der
    verify_link(tmp_path, "maker", legal_person_ca, parsed.maker_cert)
    pkeyutl_verify(tmp_path, "sealinfo", parsed.maker_cert, parsed.seal_info_der,
                   parsed.signed_value)  # fmt: skip

    # used: an SES_Signature over data, time-stamped
    response = grpc_seal.call(
        "SignData",
        seal_pb2.SignDataRequest(
            seal_id=seal.id,
            data=DATA,
            format=common_pb2.SIGNATURE_FORMAT_SES_SIGNATURE,
            timestamp=True,
            property_info="Doc_0/Signs/Sign_0/Signature.xml",
        ),
        world.rep,
    )
    assert response.data_digest.algorithm == common_pb2.DIGEST_ALGORITHM_SM3  # type: ignore[attr-defined]
    signature = gbt38540.parse_signature(response.signature)  # type: ignore[attr-defined]
    assert signature.version == 4 and signature.seal.der == seal.seal_structure
    assert signature.sign_alg == SM3_WITH_SM2_OID
    assert signature.data_hash == hashlib.new("sm3", DATA).digest()
    assert signature.data_hash != hashlib.sha256(DATA).digest()
    assert signature.cert == sm2_cert
    pkeyutl_verify(tmp_path, "tbs", sm2_cert, signature.tbs_der, signature.signature)
    # our own verifier agrees (through hsm.sm2), and finds the data
    assert structures.verify_signature(response.signature, data=DATA).data_hash  # type: ignore[attr-defined]

    # the time-stamp: our SM2 TSA over the signature value, SM3 imprint
    assert signature.time_stamp is not None
    token = cms.ContentInfo.load(signature.time_stamp)
    signed = token["content"]
    info = signed["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hash_algorithm"]["algorithm"].dotted == SM3_OID
    assert (
        info["message_imprint"]["hashed_message"].native
        == hashlib.new("sm3", signature.signature).digest()
    )
    signer = signed["signer_infos"][0]
    assert signer["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID
    tsa = world.authority.hierarchy.get("sm2-tsa")
    pkeyutl_verify(tmp_path, "tst", tsa.der, signer["signed_attrs"].untag().dump(),
                   signer["signature"].native)  # fmt: skip
    verify_link(tmp_path, "tsa", world.authority.hierarchy.get("sm2-service").der, tsa.der)
    # openssl reads the token: SM3 imprint of the signature value, from the SM2 TSA; its SM2
    # signature check in ``ts -verify`` uses an empty signer ID on OpenSSL 3.0 (and fails there
    # on every SM2 token, ours and any conforming one), hence pkeyutl above
    (tmp_path / "tst.der").write_bytes(signature.time_stamp)
    text = openssl("ts", "-reply", "-token_in", "-in", str(tmp_path / "tst.der"), "-text")
    assert "Hash Algorithm: sm3" in text and "SM2 Time-Stamping Authority" in text, text
    imprint = hashlib.new("sm3", signature.signature).digest()
    dumped = "".join(
        line.split(" - ", 1)[1][:47].replace("-", " ").replace(" ", "")
        for line in text.splitlines()
        if line.startswith("    00")
    )
    assert dumped == imprint.hex(), text


def test_pdf_sealing_of_an_sm2_seal_uses_its_p256_key(world: World, live_ca: str) -> None:
    seal = _active(world, "sm2")
    assert seal.pdf_certificate_der and seal.certificate_der
    result = world.sealer.seal(
        world.rep,
        PdfSealRequest(seal.id, one_page_pdf(), Position(1, 150, 200), PadesLevel.B_T, "contract"),
    )
    [status] = _pyhanko(world, result.sealed_pdf)
    assert status.intact and status.valid and status.trusted  # type: ignore[attr-defined]
    signer = status.signing_cert  # type: ignore[attr-defined]
    assert signer.dump() == seal.pdf_certificate_der
    # CMS SignData also signs with the P-256 key
    cms_sig = SignData(world.service).sign(world.rep, DataRequest(seal.id, data=DATA))
    content = cms.ContentInfo.load(cms_sig.signature)
    [certificate] = [
        c.chosen.dump()
        for c in content["content"]["certificates"]
        if c.chosen.dump() == seal.pdf_certificate_der
    ]
    assert _curve(certificate) == P256_OID


def _active(world: World, algorithm: str) -> Any:
    s = world.service
    seal = s.apply(
        world.rep,
        Application(IdentityRef(id=world.company_id), SealKind.CONTRACT, key_algorithm=algorithm),
    )
    s.review(REVIEWER, seal.id, True, "ok")
    s.make(MAKER, seal.id, Making())
    s.file(FILING, seal.id, "", "")
    return s.issue(FILING, seal.id, "")


def test_both_keys_share_one_lifecycle(world: World) -> None:
    seal = _active(world, "sm2")
    ca = world.authority
    sm2_row = ca.find(fingerprint=hashlib.sha256(seal.certificate_der).hexdigest())
    pdf_row = ca.find(fingerprint=hashlib.sha256(seal.pdf_certificate_der).hexdigest())
    assert sm2_row.issuer == "sm2-seal" and pdf_row.issuer == "seal"
    world.service.suspend(FILING, seal.id, "loss", "lost")
    assert ca.get(sm2_row.id).status == ca.get(pdf_row.id).status == "suspended"
    world.service.resume(FILING, seal.id, "found")
    assert ca.get(sm2_row.id).status == ca.get(pdf_row.id).status == "active"
    world.service.revoke(FILING, seal.id, "closed")
    assert ca.get(sm2_row.id).status == ca.get(pdf_row.id).status == "revoked"
    world.service.destroy(FILING, seal.id, "done")
    for row in (sm2_row, pdf_row):
        with unchanged(world.db, world.keystore), pytest.raises(KeyDestroyed):
            world.keystore.get(row.key_id or "")


def test_ecdsa_seals_keep_one_p256_key_and_sha256_ses(world: World) -> None:
    seal = _active(world, "ec-p256")
    assert seal.key_algorithm == "ec-p256" and seal.pdf_certificate_der is None
    parsed = gbt38540.parse_seal(seal.seal_structure)
    assert parsed.sign_alg == "1.2.840.10045.4.3.2"
    result = SignData(world.service).sign(world.rep, DataRequest(seal.id, data=DATA, ses=True))
    signature = gbt38540.parse_signature(result.signature)
    assert signature.data_hash == hashlib.sha256(DATA).digest()
    assert signature.sign_alg == "1.2.840.10045.4.3.2"


def test_sha256_data_hash_under_sm2_is_refused(world: World) -> None:
    seal = _active(world, "sm2")
    sign = SignData(world.service)
    # asked for: SignData refuses a SHA-256 digest for an SM2 SES_Signature, nothing recorded
    with unchanged(world.db, world.keystore), pytest.raises(InvalidArgument, match="SM3"):
        sign.sign(
            world.rep,
            DataRequest(seal.id, digest=hashlib.sha256(DATA).digest(), ses=True),
        )
    # built anyway (e.g. by another system): the structure check names the mismatch
    made = structures.build_signature(
        structures.SignatureRequest(
            seal.seal_structure, hashlib.new("sm3", DATA).digest(), "x", seal.made_at
        ),
        world.keystore,
        _key_id(world, seal),
        SignatureScheme.SM2_SM3,
        seal.certificate_der,
    )
    assert structures.verify_signature(made, data=DATA)
    forged = _with_data_hash(made, hashlib.sha256(DATA).digest(), world, seal)
    with pytest.raises(DataHashMismatch, match=r"SHA256 but .* needs SM3"):
        structures.verify_signature(forged, data=DATA)
    with pytest.raises(DataHashMismatch, match="48 bytes"):
        structures.build_signature(
            structures.SignatureRequest(
                seal.seal_structure, hashlib.sha384(DATA).digest(), "x", seal.made_at
            ),
            world.keystore,
            _key_id(world, seal),
            SignatureScheme.SM2_SM3,
            seal.certificate_der,
        )


def _key_id(world: World, seal: Any) -> str:
    row = world.authority.find(fingerprint=hashlib.sha256(seal.certificate_der).hexdigest())
    return str(row.key_id)


def _with_data_hash(der: bytes, data_hash: bytes, world: World, seal: Any) -> bytes:
    """The SES_Signature re-made, correctly signed by the seal's SM2 key, over a SHA-256
    dataHash (what a non-conforming signer would produce)."""
    sig = structures.SesSignature.load(der)
    tbs = sig["to_sign"].copy()
    tbs["data_hash"] = data_hash
    value = world.keystore.sign(_key_id(world, seal), tbs.dump(force=True), "sm2-sm3")
    return bytes(
        structures.SesSignature(
            {
                "to_sign": tbs,
                "cert": sig["cert"].native,
                "signature_alg_id": SM3_WITH_SM2_OID,
                "signature": value,
            }
        ).dump()
    )


def test_pkcs11_without_sm2_refuses_sm2_seals_and_keeps_ecdsa(
    database: Database, ca_softhsm_token: Any
) -> None:
    store = Pkcs11KeyStore(ca_softhsm_token.module, ca_softhsm_token.label, ca_softhsm_token.pin)
    try:
        with open_world(database, store) as world:  # type: ignore[arg-type]
            application = Application(
                IdentityRef(id=world.company_id), SealKind.CONTRACT, key_algorithm="sm2"
            )
            with unchanged(world.db, store), pytest.raises(FailedPrecondition, match="SM2"):
                world.service.apply(world.rep, application)
            seal = _active(world, "ec-p256")
            assert seal.key_algorithm == "ec-p256" and seal.certificate_der
            result = SignData(world.service).sign(
                world.rep, DataRequest(seal.id, data=DATA, ses=True)
            )
            assert structures.verify_signature(result.signature, data=DATA)
    finally:
        store.close()


def test_new_seals_default_to_sm2_and_the_setting_is_checked() -> None:
    from govtrust.config import ConfigError, load_settings

    assert load_settings({}, env={}).effective_seal_key_algorithm == "sm2"
    pkcs11 = {
        "hsm": "pkcs11",
        "pkcs11_module": "/m.so",
        "pkcs11_token_label": "t",
        "pkcs11_pin": "1",
    }
    assert load_settings(pkcs11, env={}).effective_seal_key_algorithm == "ec-p256"
    vendor = {"pkcs11_sm2_key_type": "0x80000001", "pkcs11_sm2_keygen_mechanism": "0x80000002",
              "pkcs11_sm2_mechanism": "0x80000003"}  # fmt: skip
    assert load_settings({**pkcs11, **vendor}, env={}).effective_seal_key_algorithm == "sm2"
    chosen = load_settings({}, env={"GOVTRUST_SEAL_DEFAULT_KEY_ALGORITHM": "ec-p256"})
    assert chosen.effective_seal_key_algorithm == "ec-p256"
    with pytest.raises(ConfigError, match="seal_default_key_algorithm"):
        load_settings({"seal_default_key_algorithm": "rsa-2048"}, env={})


def test_an_application_without_an_algorithm_takes_the_service_default(world: World) -> None:
    world.service.default_key_algorithm = "sm2"
    world.service.making.default_key_algorithm = "sm2"
    applied = world.service.apply(
        world.rep, Application(IdentityRef(id=world.company_id), SealKind.FINANCE)
    )
    assert applied.key_algorithm == "sm2"
    with unchanged(world.db, world.keystore), pytest.raises(InvalidArgument):
        world.service.apply(
            world.rep,
            Application(IdentityRef(id=world.company_id), SealKind.INVOICE, key_algorithm="x"),
        )


def test_remaking_an_sm2_seal_keeps_sm2_and_revokes_both_old_certificates(world: World) -> None:
    old = _active(world, "sm2")
    revoked, new = world.service.remake(MAKER, old.id, "key_compromise", "key lost")
    assert revoked.status.value == "revoked" and new.key_algorithm == "sm2"
    assert new.pdf_certificate_der and new.certificate_der and new.seal_structure
    assert _curve(new.certificate_der) == SM2_CURVE_OID
    for der in (old.certificate_der, old.pdf_certificate_der):
        row = world.authority.find(fingerprint=hashlib.sha256(der).hexdigest())
        assert row.status == "revoked" and row.revocation_reason == 1
    assert gbt38540.parse_seal(new.seal_structure).sign_alg == SM3_WITH_SM2_OID
