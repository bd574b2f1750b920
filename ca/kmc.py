"""The key management centre (KMC, GB/T 25056): encryption certificates paired with SM2 signing
certificates, their keys generated and escrowed in the key store.

For an active SM2 legal-person (or citizen) signing certificate, :func:`issue_encryption_pair`

1. generates an SM2 encryption key pair in the key store as an *escrowed* key
   (:meth:`hsm.KeyStore.generate_escrowed`: wrapped under the KMC key, never in clear, never
   signing);
2. issues the encryption certificate under the same SM2 CA, subject and policies as the signing
   certificate, with the encryption profile (keyUsage keyEncipherment, dataEncipherment,
   keyAgreement — GM/T 0015's encryption certificate; TLCP, GB/T 38636, uses it for SM2 key
   transport and key exchange);
3. envelopes the private key to the signing certificate's public key (GM/T 0009
   ``SM2EnvelopedKey``, :mod:`hsm.envelope`): only the holder of the signing key opens it;
4. stores the certificate, links both certificates (``paired_with``), publishes the OCSP
   response and writes the audit record, in one transaction — or, on any refusal, destroys the
   escrowed key and stores nothing.

The pair then lives together (:mod:`ca.revocation`): revoking either certificate revokes both, a
suspended signing certificate suspends its encryption certificate, and renewing the signing
certificate re-keys both (:meth:`ca.authority.CertificateAuthority.renew`). Recovery of an escrowed
key is :mod:`ca.recovery` (dual control).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from asn1crypto import x509

from ca import ocsp
from ca.context import CaContext
from ca.issuance import (
    ISSUE_ROLES,
    IssueRequest,
    SubjectSpec,
    _build_and_sign,
    _certificate_row,
    _Key,
    check_identity,
)
from ca.models import CaCertificate
from ca.profiles import END_ENTITY_PROFILES, Profile, issuer_for
from ca.signing import now
from govtrust import audit
from govtrust.db import as_utc
from govtrust.errors import FailedPrecondition, InvalidArgument, NotFound, PreconditionViolation
from govtrust.principal import Principal
from hsm.keystore import KeyAlgorithm

ENCRYPTION_KEY_USAGE = frozenset({"key_encipherment", "data_encipherment", "key_agreement"})


def _encryption_profile(signing: Profile) -> Profile:
    return dataclasses.replace(
        signing,
        name=f"{signing.name}-encryption",
        key_usage=ENCRYPTION_KEY_USAGE,
        extended_key_usage=(),
        semantics_identifier=None,  # the QC statement speaks of signatures, not encryption
        qc_types=(),
        key_algorithms=frozenset({KeyAlgorithm.SM2}),
        default_key_algorithm=KeyAlgorithm.SM2,
    )


ENCRYPTION_PROFILES: dict[str, Profile] = {
    name: _encryption_profile(END_ENTITY_PROFILES[name]) for name in ("legal-person", "citizen")
}
"""Signing profile name → the profile of its encryption certificate (not selectable for
ordinary issuance: an encryption certificate exists only paired, with an escrowed key)."""


def is_encryption_profile(name: str) -> bool:
    """Whether ``name`` is the profile of a KMC encryption certificate."""
    return any(p.name == name for p in ENCRYPTION_PROFILES.values())


@dataclass(frozen=True)
class EncryptionPair:
    """A signing certificate, the encryption certificate paired with it and the enveloped key."""

    signing: CaCertificate
    encryption: CaCertificate
    envelope: bytes  # DER GM/T 0009 SM2EnvelopedKey to the signing certificate's public key


def _target(row: CaCertificate) -> str:
    return f"certificate/{row.issuer}/{row.serial}"


def _load(ctx: CaContext, certificate_id: str) -> CaCertificate:
    with ctx.db.read() as session:
        row = session.get(CaCertificate, certificate_id) if certificate_id else None
    if row is None:
        raise NotFound("no such certificate")
    return row


def check_pairable(row: CaCertificate) -> Profile:
    """The encryption profile for the signing certificate ``row``, or the specific refusal."""
    field = "signing_certificate"
    if is_encryption_profile(row.profile):
        raise InvalidArgument.field(field, "this is an encryption certificate, not a signing one")
    profile = ENCRYPTION_PROFILES.get(row.profile)
    if profile is None:
        raise InvalidArgument.field(
            field,
            f"a {row.profile} certificate gets no encryption certificate "
            f"(only {', '.join(sorted(ENCRYPTION_PROFILES))})",
        )
    if row.key_algorithm != KeyAlgorithm.SM2.value:
        raise InvalidArgument.field(
            field,
            f"the signing certificate's key is {row.key_algorithm}, not SM2: the key envelope "
            "(GM/T 0009 SM2EnvelopedKey) is encrypted to an SM2 signing key",
        )
    if row.status != "active":
        raise FailedPrecondition(
            f"the signing certificate is {row.status}",
            [PreconditionViolation("STATE", _target(row), f"{row.status}, not active")],
        )
    if row.paired_with is not None:
        raise FailedPrecondition(
            "the signing certificate already has an encryption certificate",
            [PreconditionViolation("STATE", _target(row), "already paired")],
        )
    return profile


def _validity_days(profile: Profile, signing: CaCertificate, requested: int) -> int:
    """The requested days (0: the profile's default), never past the signing certificate."""
    days = profile.validity_days(requested)
    remaining = (as_utc(signing.not_after) - now()).total_seconds() / 86400
    return max(1, min(days, math.floor(remaining)))


def issue_encryption_pair(
    ctx: CaContext,
    principal: Principal,
    signing_certificate_id: str,
    *,
    validity_days: int = 0,
) -> EncryptionPair:
    """Issue the encryption certificate paired with an SM2 signing certificate; return both and
    the envelope. Nothing is stored (and the escrowed key is destroyed) on any refusal."""
    principal.require_role(*ISSUE_ROLES)
    signing = _load(ctx, signing_certificate_id)
    profile = check_pairable(signing)
    days = _validity_days(profile, signing, validity_days)
    hashed = signing.identity_salt is not None
    request = IssueRequest(
        profile=profile.name,
        subject=SubjectSpec(identity=signing.identity_id),
        hash_identity_number=hashed,
    )
    subject = check_identity(ctx, profile, request, principal, renewal=True)
    ca = ctx.hierarchy.ca(issuer_for(profile, KeyAlgorithm.SM2))
    label = f"kmc/{profile.name}/{signing.identity_id}"[:255]
    ref = ctx.keystore.generate_escrowed(label)
    try:
        key = _Key(ref.public_key_der, KeyAlgorithm.SM2)
        signed = _build_and_sign(ctx, profile, ca, subject, key, days, hashed)
        row, values = _certificate_row(
            profile, ca, subject, signed, key_algorithm="sm2", key_id=None, renewed_from=None
        )
        row.paired_with = signing.id
        row.escrow_key_id = ref.key_id
        values.update(paired_with=signing.id, escrow_key_id=ref.key_id)
        envelope = ctx.keystore.export_enveloped(ref, _signing_public_key(signing))
        response = ocsp.preproduce(ctx, row)
        with ctx.db.transaction() as session:
            current = session.get(CaCertificate, signing.id, with_for_update=True)
            assert current is not None
            check_pairable(current)  # another caller may have paired or revoked it meanwhile
            session.add(CaCertificate(**values))
            session.flush()
            current.paired_with = row.id
            session.add(response)
            audit.append(
                session,
                actor=principal.actor,
                action="ca.kmc.issue_encryption_pair",
                target=_target(row),
                details={
                    "profile": profile.name,
                    "subject": row.subject,
                    "signing_certificate": _target(current),
                    "escrow_key_id": ref.key_id,
                    "envelope": "GM/T 0009 SM2EnvelopedKey to the signing certificate's key",
                },
            )
    except BaseException:
        ctx.keystore.destroy(ref)
        raise
    ctx.ocsp_cache.put(
        row.issuer,
        int(row.serial, 16),
        response.der,
        ocsp.refresh_at(ctx, response.next_update),
        None,
    )
    return EncryptionPair(current, row, envelope)


def _signing_public_key(signing: CaCertificate) -> bytes:
    return bytes(x509.Certificate.load(signing.der).public_key.dump())


def encryption_certificate_of(ctx: CaContext, signing: CaCertificate) -> CaCertificate | None:
    """The encryption certificate paired with ``signing`` (None when it has none)."""
    if signing.paired_with is None or is_encryption_profile(signing.profile):
        return None
    with ctx.db.read() as session:
        return session.get(CaCertificate, signing.paired_with)
