"""The seal maker: the seal-making unit's organisation certificate (legal-person profile, its
USCC) covers the seals it makes, a seal that would outlive it is refused, and rotating the
maker's key leaves the seals it made valid."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asn1crypto import x509
from sqlalchemy import select, update

from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec, validity_window
from ca.models import CaCertificate
from idp.types import IdentityRef
from seal.authority import DEFAULT_MAKER
from seal.errors import MakerCertificateTooShort
from seal.lifecycle import Application, Making, SealService
from seal.maker import MAKER_NAME, MAKER_VALIDITY_DAYS
from seal.models import SealMakerRow
from seal.structures import verify_seal
from seal.types import SealKind, SealStatus
from tests.ca.conftest import OPERATOR, make_csr
from tests.seal.conftest import MAKER, REVIEWER, World
from tests.unchanged import unchanged


def _cert(der: bytes) -> x509.Certificate:
    return x509.Certificate.load(der)


def _structure(world: World, seal_id: str) -> bytes:
    structure = world.service.get(seal_id).seal_structure
    assert structure is not None
    return structure


def test_maker_is_the_units_organisation_certificate_covering_its_seals(world: World) -> None:
    seal = world.active_seal()
    maker = world.service.maker()
    cert = _cert(maker.certificate_der)
    subject = cert.subject.native
    assert subject["organization_identifier"] == f"NTRCN-{DEFAULT_MAKER.uscc}"
    assert subject["organization_name"] == DEFAULT_MAKER.name
    assert cert.issuer == world.authority.hierarchy.get("legal-person").subject
    assert cert.extended_key_usage_value is None or "server_auth" not in (
        cert.extended_key_usage_value.native
    )
    assert seal.valid_until is not None and cert.not_valid_after >= seal.valid_until
    parsed = verify_seal(_structure(world, seal.id))
    assert parsed.maker_certificate == maker.certificate_der


def _approved(world: World) -> str:
    s = world.service
    seal = s.apply(world.rep, Application(IdentityRef(id=world.company_id), SealKind.CONTRACT))
    s.review(REVIEWER, seal.id, True, "ok")
    return seal.id


@pytest.mark.parametrize("maker_exists", [False, True])
def test_a_seal_that_would_outlive_its_maker_is_refused(world: World, maker_exists: bool) -> None:
    seal_id = _approved(world)
    if maker_exists:
        world.service.maker()
    # three years on (the CA still issues today): a fresh maker certificate ends five years
    # from today, the seal would run three years from then
    later = SealService(
        world.db,
        world.keystore,
        world.seal_authority,
        world.service.owners,
        clock=lambda: world.service.now() + timedelta(days=3 * 365),
    )
    # refused twice with nothing changed: the maker is neither issued nor rotated (a fresh one
    # would end as soon), the seal stays approved with no certificate, no event, no key
    for _ in range(2):
        with (
            unchanged(world.db, world.keystore),
            pytest.raises(MakerCertificateTooShort) as refused,
        ):
            later.make(MAKER, seal_id, Making())
        [violation] = refused.value.violations
        assert violation.type == "MAKER_CERTIFICATE" and violation.subject == f"seal/{seal_id}"
    after = world.service.get(seal_id)
    assert after.status is SealStatus.APPROVED and after.certificate_id == ""


def test_the_announced_maker_end_is_the_issued_certificates(world: World) -> None:
    announced = world.seal_authority.maker_certificate_end(MAKER_VALIDITY_DAYS)
    issued = world.seal_authority.issue_maker_certificate("ec-p256", MAKER_VALIDITY_DAYS)
    end = _cert(issued.der).not_valid_after
    assert timedelta(0) <= end - announced <= timedelta(seconds=5)  # whole seconds, issued later
    # the window issuance uses: backdated a minute, capped at the issuing CA's own end
    ca = world.authority.hierarchy.ca("legal-person")
    not_before, not_after = validity_window(ca, 30)
    assert not_after - not_before == timedelta(days=30)
    assert validity_window(ca, 100 * 365)[1] == ca.not_after


def test_a_maker_too_short_for_the_seal_is_rotated_when_a_fresh_one_covers_it(
    world: World,
) -> None:
    seal_id = _approved(world)
    short = world.seal_authority.issue_maker_certificate("ec-p256", 30)
    world.service.maker()
    _plant_maker(world, short.der, short.key_id)
    made = world.service.make(MAKER, seal_id, Making())
    maker = world.service.maker()
    assert maker.key_id != short.key_id
    assert made.valid_until is not None
    assert _cert(maker.certificate_der).not_valid_after >= made.valid_until


def _plant_maker(world: World, der: bytes, key_id: str) -> None:
    with world.db.transaction() as session:
        session.execute(
            update(SealMakerRow)
            .where(SealMakerRow.name == MAKER_NAME)
            .values(key_id=key_id, certificate_der=der, key_algorithm="ec-p256")
        )


def test_rotation_keeps_the_seals_already_made_valid(world: World) -> None:
    first = world.active_seal()
    old = world.service.maker()
    # the stored maker certificate ends in 30 days: the next seal rotates the maker
    short = world.seal_authority.issue_maker_certificate("ec-p256", 30)
    _plant_maker(world, short.der, short.key_id)
    second = world.active_seal(SealKind.FINANCE)
    new = world.service.maker()
    assert new.key_id not in (old.key_id, short.key_id)
    assert second.valid_until is not None
    assert _cert(new.certificate_der).not_valid_after >= second.valid_until
    assert verify_seal(_structure(world, second.id)).maker_certificate == new.certificate_der
    # the earlier seal keeps its maker certificate, which is neither revoked nor replaced in it
    assert verify_seal(_structure(world, first.id)).maker_certificate == old.certificate_der
    old_row = world.authority.get(_certificate_id(world, old.certificate_der))
    assert old_row.status == "active"


def _certificate_id(world: World, der: bytes) -> str:
    serial = f"{_cert(der).serial_number:X}"
    with world.db.read() as session:
        row = session.scalar(select(CaCertificate).where(CaCertificate.serial == serial))
    assert row is not None
    return row.id


def test_a_revoked_maker_is_replaced_before_the_next_seal(world: World) -> None:
    world.active_seal()
    old = world.service.maker()
    world.authority.revoke(
        OPERATOR, _certificate_id(world, old.certificate_der), reason=1, comment="key compromise"
    )
    seal = world.active_seal(SealKind.FINANCE)
    new = world.service.maker()
    assert new.key_id != old.key_id
    assert verify_seal(_structure(world, seal.id)).maker_certificate == new.certificate_der


def test_an_old_profile_maker_is_replaced_on_first_use(world: World) -> None:
    world.service.maker()
    # what earlier versions stored: a service (TLS) certificate named seal-maker
    issued = world.authority.issue(
        OPERATOR,
        IssueRequest("service", SubjectSpec(service=ServiceSubject("seal-maker")), csr=make_csr()),
    )
    _plant_maker(world, issued.certificate.der, "old-service-key")
    maker = world.service.maker()
    assert maker.key_id != "old-service-key"
    subject = _cert(maker.certificate_der).subject.native
    assert subject["organization_identifier"] == f"NTRCN-{DEFAULT_MAKER.uscc}"


def test_the_seal_making_unit_comes_from_configuration() -> None:
    from govtrust.config import ConfigError, Settings, load_settings
    from seal.authority import MakerIdentity
    from seal.runtime import maker_identity

    assert maker_identity(Settings()) == DEFAULT_MAKER
    configured = Settings(
        seal_maker_name="某某印章制作有限公司", seal_maker_uscc="11100000000013338W"
    )
    assert maker_identity(configured) == MakerIdentity("某某印章制作有限公司", "11100000000013338W")
    with pytest.raises(ConfigError, match="seal_maker_uscc"):
        maker_identity(Settings(seal_maker_name="x", seal_maker_uscc="11100000000013338X"))
    with pytest.raises(ConfigError, match="seal_maker_name and seal_maker_uscc"):
        load_settings(env={"GOVTRUST_SEAL_MAKER_USCC": "11100000000013338W"})
