"""The seal maker (制章者): the seal-making unit's organisation certificate and its rotation.

GB/T 38540 has the seal-making unit sign every SESeal with an organisation (单位) certificate:
here a ``legal-person`` profile certificate (``organizationIdentifier=NTRCN-<USCC>``) of the
configured unit (:class:`seal.authority.MakerIdentity`), valid for the profile's maximum. An
SESeal's validity never outlasts its maker's certificate: :func:`current_maker` rotates the maker
(new key, new certificate) when the current certificate ends before the seal would but a fresh
one would cover it, and the caller refuses with :class:`~seal.errors.MakerCertificateTooShort`,
before issuing or rotating anything (:func:`maker_end`), when even a fresh one would end too
soon (the profile's maximum or the legal-person CA's own end comes first). A retired maker
certificate is NOT revoked and its seals keep verifying: each SESeal carries the certificate it
was signed with. A maker certificate revoked at the CA (key compromise) is replaced before the
next seal is made. The row keeps only the current maker; a certificate of the old ``service``
profile is replaced on first use.

There is one maker per key algorithm family: ECDSA seals' SESeals are signed by the P-256 maker
(row ``seal-maker``, from the legal-person CA), SM2 seals' by the SM2 maker (row
``seal-maker-sm2``, from the SM2 legal-person CA), each rotated on its own.
"""

from __future__ import annotations

from datetime import datetime

from asn1crypto import x509
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ca.profiles import get_profile
from govtrust import audit
from govtrust.db import Database
from hsm.keystore import KeyStore, default_scheme
from seal import structures
from seal.authority import SealAuthority
from seal.models import SealMakerRow

MAKER_NAME = "seal-maker"
MAKER_KEY_ALGORITHM = "ec-p256"
SM2_MAKER_NAME = "seal-maker-sm2"
MAKER_VALIDITY_DAYS = get_profile("legal-person").max_validity_days


def maker_for(seal_algorithm: str) -> tuple[str, str]:
    """The maker row name and key algorithm that sign the SESeal of a seal of
    ``seal_algorithm``: the SM2 maker for SM2 seals, the P-256 one for the others."""
    if seal_algorithm == "sm2":
        return SM2_MAKER_NAME, "sm2"
    return MAKER_NAME, MAKER_KEY_ALGORITHM


def not_after(certificate_der: bytes) -> datetime:
    """The end of a certificate's validity (aware UTC)."""
    moment: datetime = x509.Certificate.load(certificate_der).not_valid_after
    return moment


def is_organisation_certificate(certificate_der: bytes) -> bool:
    """Whether a maker certificate is of the organisation profile (names a USCC, no TLS EKU)."""
    cert = x509.Certificate.load(certificate_der)
    subject = cert.subject.native
    eku = cert.extended_key_usage_value
    tls = eku is not None and "server_auth" in eku.native
    return "organization_identifier" in subject and not tls


def _choose(
    db: Database, authority: SealAuthority, target: datetime, name: str = MAKER_NAME
) -> tuple[SealMakerRow | None, bool]:
    """The stored maker row and whether to rotate it before signing a seal valid through
    ``target``. A stored certificate that is of the organisation profile and active at the CA
    but ends before ``target`` is replaced only when a fresh one would cover ``target``: when
    the CA would cap a fresh one as short (its own end), rotating cannot help and the caller
    refuses with nothing changed (otherwise every refused make issued a new key and
    certificate)."""
    with db.read() as session:
        row = session.get(SealMakerRow, name)
    if row is None or not is_organisation_certificate(row.certificate_der):
        return row, True
    if authority.certificate_status(row.certificate_der) != "active":
        return row, True
    if not_after(row.certificate_der) >= target:
        return row, False
    return row, authority.maker_certificate_end(MAKER_VALIDITY_DAYS) >= target


def maker_end(
    db: Database,
    authority: SealAuthority,
    moment: datetime,
    covering: datetime | None = None,
    seal_algorithm: str = MAKER_KEY_ALGORITHM,
) -> datetime:
    """When the maker certificate :func:`current_maker` would use for ``covering`` ends: the
    stored one's, or a fresh one's when it would be issued or rotated (nothing is issued)."""
    name, _ = maker_for(seal_algorithm)
    row, rotate = _choose(db, authority, max(moment, covering or moment), name)
    if rotate or row is None:
        return authority.maker_certificate_end(MAKER_VALIDITY_DAYS)
    return not_after(row.certificate_der)


def current_maker(
    db: Database,
    keystore: KeyStore,
    authority: SealAuthority,
    moment: datetime,
    covering: datetime | None = None,
    seal_algorithm: str = MAKER_KEY_ALGORITHM,
) -> structures.Maker:
    """The maker whose certificate is valid through ``covering`` (default: now), issued or
    rotated when the stored one is missing, of the old profile, no longer active at the CA
    (revoked after a key compromise, or on hold) or ends too soon while a fresh one would not
    (see :func:`maker_end` to know beforehand whether it will cover ``covering``)."""
    name, algorithm = maker_for(seal_algorithm)
    row, rotate = _choose(db, authority, max(moment, covering or moment), name)
    if rotate or row is None:
        row = _rotate(db, keystore, authority, row, moment, name, algorithm)
    return structures.Maker(
        keystore, row.key_id, default_scheme(row.key_algorithm), row.certificate_der
    )


def _rotate(
    db: Database,
    keystore: KeyStore,
    authority: SealAuthority,
    old: SealMakerRow | None,
    moment: datetime,
    name: str = MAKER_NAME,
    algorithm: str = MAKER_KEY_ALGORITHM,
) -> SealMakerRow:
    issued = authority.issue_maker_certificate(algorithm, MAKER_VALIDITY_DAYS)
    won = True
    try:
        with db.transaction() as session:
            if old is None:
                session.add(
                    SealMakerRow(
                        name=name,
                        key_id=issued.key_id,
                        key_algorithm=issued.key_algorithm,
                        certificate_der=issued.der,
                        created_at=moment,
                    )
                )
                session.flush()
            else:  # compare-and-set: a concurrent rotation wins, ours is discarded
                changed = session.execute(
                    update(SealMakerRow)
                    .where(SealMakerRow.name == name, SealMakerRow.key_id == old.key_id)
                    .values(
                        key_id=issued.key_id,
                        key_algorithm=issued.key_algorithm,
                        certificate_der=issued.der,
                        created_at=moment,
                    )
                )
                won = changed.rowcount == 1  # type: ignore[attr-defined]
            if won:
                audit.append(
                    session,
                    actor="system:seal-service",
                    action="seal.maker_rotate" if old is not None else "seal.maker_create",
                    target=f"seal-maker/{name}",
                    details={
                        "certificate_id": issued.certificate_id,
                        "not_after": not_after(issued.der).isoformat(),
                        "previous_key_id": old.key_id if old is not None else "",
                    },
                )
    except IntegrityError:
        won = False
    if not won:
        keystore.destroy(issued.key_id)
    with db.read() as session:
        row = session.get(SealMakerRow, name)
    assert row is not None
    return row
