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
