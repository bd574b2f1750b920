"""Certificate profiles as data: key usage, EKU, validity, policies, subject rules, extensions.

Issuance reads a :class:`Profile` and never branches on the profile's name. Subject rules are
templates over the subject record the :class:`~ca.directory.SubjectDirectory` returns
(``{name}``, ``{id_number}``, ``{uscc}``, …), so subject fields come from the registry, never
from the CSR. ``{arc}`` in a policy or extension OID is the configured OID arc.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ca.config import sm2_name
from ca.extensions import QC_TYPE_ESEAL, SEMANTICS_LEGAL_PERSON, SEMANTICS_NATURAL_PERSON
from govtrust.errors import InvalidArgument
from hsm.keystore import KeyAlgorithm

# ETSI EN 319 411-1 normalized certificate policy (NCP).
NCP_POLICY = "0.4.0.2042.1.1"
DOCUMENT_SIGNING_EKU = "1.3.6.1.5.5.7.3.36"  # RFC 9336

SubjectRule = tuple[str, str]
"""(asn1crypto attribute name, template over the subject record)."""


@dataclass(frozen=True)
class Profile:
    """Everything that differs between kinds of certificate."""

    name: str
    issuer: str  # name of the issuing CA
    subject_kind: str  # citizen | legal-person | seal | service
    key_usage: frozenset[str]
    extended_key_usage: tuple[str, ...] = ()
    eku_critical: bool = False
    default_validity_days: int = 365
    max_validity_days: int = 3 * 365
    policies: tuple[str, ...] = ()
    subject: tuple[SubjectRule, ...] = ()
    subject_hashed: tuple[SubjectRule, ...] = ()  # subject when the ID number is hashed
    semantics_identifier: str | None = None
    qc_types: tuple[str, ...] = ()
    identify_code: bool = False
    seal_id_extension: bool = False
    subject_alt_names: bool = False
    rsa_key_encipherment: bool = False  # add keyEncipherment for RSA keys (TLS key transport)
    min_assurance: int = 2
    # SM2 keys are certified by the SM2 counterpart of ``issuer`` (see :func:`issuer_for`)
    key_algorithms: frozenset[KeyAlgorithm] = field(default_factory=lambda: frozenset(KeyAlgorithm))
    default_key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256

    def validity_days(self, requested: int) -> int:
        """The requested validity (0 → default), refused above the profile's maximum."""
        if requested < 0:
            raise InvalidArgument.field("validity_days", "must not be negative")
        if requested == 0:
            return self.default_validity_days
        if requested > self.max_validity_days:
            raise InvalidArgument.field(
                "validity_days",
                f"{requested} exceeds the {self.name} profile's maximum of "
                f"{self.max_validity_days} days",
            )
        return requested


END_ENTITY_PROFILES: dict[str, Profile] = {
    "citizen": Profile(
        name="citizen",
        issuer="citizen",
        subject_kind="citizen",
        key_usage=frozenset({"digital_signature", "non_repudiation"}),
        extended_key_usage=("client_auth", DOCUMENT_SIGNING_EKU),
        default_validity_days=2 * 365,
        max_validity_days=5 * 365,
        policies=(NCP_POLICY, "{arc}.1.1"),
        subject=(
            ("country_name", "CN"),
            ("surname", "{surname}"),
            ("given_name", "{given_name}"),
            ("common_name", "{name}"),
            ("serial_number", "IDCCN-{id_number}"),
        ),
        # EN 319 412-2 NAT-4.2.4-1/-4: givenName/surname OR pseudonym, never both. A hashed ID
        # number makes the pseudonym variant: the salted hash (also in IdentifyCode) keeps the
        # DN unique without the number, the common name still names the holder.
        subject_hashed=(
            ("country_name", "CN"),
            ("common_name", "{name}"),
            ("pseudonym", "{identity_hash}"),
        ),
        semantics_identifier=SEMANTICS_NATURAL_PERSON,
        identify_code=True,
        min_assurance=2,
    ),
    "legal-person": Profile(
        name="legal-person",
        issuer="legal-person",
        subject_kind="legal-person",
        key_usage=frozenset({"digital_signature", "non_repudiation"}),
        extended_key_usage=("client_auth", DOCUMENT_SIGNING_EKU),
        default_validity_days=2 * 365,
        max_validity_days=5 * 365,
        policies=(NCP_POLICY, "{arc}.1.2"),
        subject=(
            ("country_name", "CN"),
            ("organization_name", "{name}"),
            ("organization_identifier", "NTRCN-{uscc}"),
            ("common_name", "{name}"),
        ),
        semantics_identifier=SEMANTICS_LEGAL_PERSON,
        min_assurance=2,
    ),
    "seal": Profile(
        name="seal",
        issuer="seal",
        subject_kind="seal",
        key_usage=frozenset({"digital_signature", "non_repudiation"}),
        default_validity_days=3 * 365,
        max_validity_days=5 * 365,
        policies=("{arc}.1.3",),
        subject=(
            ("country_name", "CN"),
            ("organization_name", "{owner_name}"),
            ("organization_identifier", "NTRCN-{owner_uscc}"),
            ("organizational_unit_name", "{seal_kind}"),
            ("common_name", "{seal_name}"),
        ),
        semantics_identifier=SEMANTICS_LEGAL_PERSON,
        qc_types=(QC_TYPE_ESEAL,),
        seal_id_extension=True,
        min_assurance=2,
    ),
    "service": Profile(
        name="service",
        issuer="service",
        subject_kind="service",
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=("server_auth", "client_auth"),
        default_validity_days=365,
        max_validity_days=2 * 365,
        policies=("{arc}.1.4",),
        subject=(("country_name", "CN"), ("common_name", "{system_id}")),
        subject_alt_names=True,
        rsa_key_encipherment=True,
        min_assurance=0,
    ),
}

# Profiles of our own hierarchy (used by ca.hierarchy; not selectable for issuance).
ROOT_KEY_USAGE = frozenset({"key_cert_sign", "crl_sign"})
ISSUING_KEY_USAGE = frozenset({"digital_signature", "key_cert_sign", "crl_sign"})
RESPONDER_PROFILE = Profile(
    name="ocsp-responder",
    issuer="",
    subject_kind="responder",
    key_usage=frozenset({"digital_signature"}),
    extended_key_usage=("ocsp_signing",),
    policies=("{arc}.1.5",),
)
TSA_PROFILE = Profile(
    name="tsa",
    issuer="service",
    subject_kind="tsa",
    key_usage=frozenset({"digital_signature"}),
    extended_key_usage=("time_stamping",),
    eku_critical=True,
    policies=("{arc}.1.6",),
)

# Policy OID of the time-stamps our TSA issues.
TSA_POLICY_SUFFIX = ".2.1"


def get_profile(name: str) -> Profile:
    """The end-entity profile called ``name``; ``InvalidArgument`` naming ``profile`` otherwise."""
    try:
        return END_ENTITY_PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(END_ENTITY_PROFILES))
        raise InvalidArgument.field(
            "profile", f"unknown certificate profile {name!r} (known: {known})"
        ) from None


def issuer_for(profile: Profile, algorithm: KeyAlgorithm) -> str:
    """The issuing CA of ``profile`` for a key of ``algorithm``: SM2 keys go to the SM2
    hierarchy's CA (``sm2-citizen``), every other key to the ECDSA one (``citizen``)."""
    return sm2_name(profile.issuer) if algorithm is KeyAlgorithm.SM2 else profile.issuer


def resolve_oid(template: str, arc: str) -> str:
    """Expand ``{arc}`` in a policy or extension OID template."""
    return template.replace("{arc}", arc)


def seal_id_oid(arc: str) -> str:
    """OID of the seal id extension under the configured arc."""
    return f"{arc}.3.1"
