"""Licence signers from the departments' official e-seals (the production ``signers``)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from govtrust.errors import FailedPrecondition
from license.departments import DepartmentSealSigners, department_seal_chains
from license.identifiers import build_identifier
from license.qr import TrustList, decode_payload, encode_payload
from license.signed_data import LicenceMetadata, sign_licence, verify_licence
from seal.types import SealKind
from tests.license.conftest import TYPE_CODE, sample_metadata
from tests.seal.conftest import FILING, USCC, World, world  # noqa: F401 - fixture
from tests.unchanged import unchanged

pytestmark = pytest.mark.usefixtures("world")


def _metadata() -> LicenceMetadata:
    ident = build_identifier(TYPE_CODE, USCC, "20230000403", 1)
    return sample_metadata(identifier=str(ident), issuer_code=USCC)


def _root(w: World) -> x509.Certificate:
    return x509.load_der_x509_certificate(w.seal_authority.chain()[-1])


def test_official_seal_signs_licences_verifiable_from_the_root(world: World) -> None:  # noqa: F811
    seal = world.active_seal(SealKind.OFFICIAL)
    signers = DepartmentSealSigners(world.service, world.keystore)
    signer = signers(USCC)
    assert signer.key.key_id == world.service.department_use(USCC, "licence").key_id
    assert signers(USCC) is signer  # cached per seal key
    metadata = _metadata()
    verified = verify_licence(sign_licence(signer, metadata), [_root(world)])
    assert verified.metadata.identifier == metadata.identifier
    assert verified.signer.public_bytes(Encoding.DER) == seal.certificate_der

    chains = department_seal_chains(world.service)
    assert [c[0] for c in chains] == [signer.chain[0]]
    trust = TrustList([_root(world)])
    for chain in chains:
        trust.add(chain)
    assert decode_payload(encode_payload(signer, metadata), trust).identifier == (
        metadata.identifier
    )


def test_no_official_seal_or_an_inactive_one_stops_signing(world: World) -> None:  # noqa: F811
    world.active_seal(SealKind.CONTRACT)  # not an official seal
    signers = DepartmentSealSigners(world.service, world.keystore)
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(FailedPrecondition, match="no active official seal"),
    ):
        signers(USCC)
    seal = world.active_seal(SealKind.OFFICIAL)
    signers(USCC)
    world.service.suspend(world.rep, seal.id, "lost", "key lost")
    with unchanged(world.db, world.keystore), pytest.raises(FailedPrecondition, match="suspended"):
        signers(USCC)


def test_sm2_official_seals_carry_their_sm2_chain_in_the_trust_list(
    world: World,  # noqa: F811
) -> None:
    import base64
    import json

    from idp.types import IdentityRef
    from license.chain import verify_chain
    from license.departments import department_sm2_seal_chains
    from license.errors import LicenceVerificationFailed
    from license.qr import export_trust_list
    from seal.lifecycle import Application, Making
    from tests.seal.conftest import MAKER, REVIEWER

    p256 = world.active_seal(SealKind.OFFICIAL)  # a P-256 official seal: no SM2 chain
    assert department_sm2_seal_chains(world.service) == []
    s = world.service
    s.revoke(FILING, p256.id, "replaced by an SM2 seal")  # one official seal at a time
    applied = s.apply(
        world.rep,
        Application(IdentityRef(id=world.company_id), SealKind.OFFICIAL, key_algorithm="sm2"),
    )
    s.review(REVIEWER, applied.id, True, "ok")
    s.make(MAKER, applied.id, Making())
    s.file(FILING, applied.id, "", "")
    seal = s.issue(FILING, applied.id, "")
    [chain] = department_sm2_seal_chains(world.service)
    assert chain[0].public_bytes(Encoding.DER) == seal.certificate_der
    sm2_root = x509.load_der_x509_certificate(world.seal_authority.chain(sm2=True)[-1])
    verify_chain(chain, [sm2_root])  # the SM2 seal CA's chain, up to the SM2 root
    with unchanged(world.db, world.keystore), pytest.raises(LicenceVerificationFailed):
        verify_chain(chain, [_root(world)])

    chains = department_seal_chains(world.service)
    document = export_trust_list(chains, [chain])
    exported = json.loads(document)["sm2_chains"]
    assert exported == [[base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in chain]]
    # the JWS/QR chains (P-256, the SM2 seal's PDF key among them) still load as before
    trust = TrustList.load([_root(world)], document, strict=True)
    assert {c[0].public_bytes(Encoding.DER) for c in chains} >= {seal.pdf_certificate_der}
    assert trust is not None
