"""The CA hierarchy: root, issuing CAs, delegated OCSP responders and the TSA.

:func:`bootstrap` creates whatever is missing on first start (idempotent, safe when several
workers start at once: keys are generated outside the transaction, the rows are inserted in one
transaction, and the loser of a race destroys its keys and loads the winner's hierarchy).
:class:`Hierarchy` is the loaded, read-only view the rest of ``ca`` signs with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import keys, x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ca.builder import (
    basic_constraints,
    build_certificate,
    ext,
    key_identifier,
    ordered_name,
    profile_extensions,
    random_serial,
    serial_hex,
    status_extensions,
)
from ca.config import ISSUING_CAS, SM2_PREFIX, CaConfig, sm2_name
from ca.models import CaCounter, CaIssuer
from ca.profiles import (
    ISSUING_KEY_USAGE,
    RESPONDER_PROFILE,
    ROOT_KEY_USAGE,
    TSA_PROFILE,
)
from ca.signing import SigningKey, now
from govtrust import audit
from govtrust.db import Database
from govtrust.errors import NotFound, PreconditionViolation
from hsm.errors import Sm2NotAvailable
from hsm.keystore import KeyAlgorithm, KeyStore, parse_algorithm

ROOT = "root"
TSA = "tsa"
SM2_ROOT = sm2_name(ROOT)
SM2_TSA = sm2_name(TSA)
# OCSP CertIDs are accepted with these issuer-name/key hashes (SM3 for the national side).
CERT_ID_DIGESTS = ("sha1", "sha256", "sm3")


def responder_name(ca: str) -> str:
    """Name of the delegated OCSP responder of ``ca``."""
    return f"{ca}-ocsp"


@dataclass(frozen=True)
class Issuer:
    """One certificate of our hierarchy with its signing key and precomputed look-up values."""

    name: str
    role: str  # root | issuing | ocsp | tsa
    parent: str | None
    key: SigningKey
    der: bytes
    certificate: x509.Certificate
    subject: x509.Name
    subject_der: bytes
    key_id: bytes  # subjectKeyIdentifier
    not_before: datetime
    not_after: datetime
    name_hash: dict[str, bytes]  # digest name -> hash of the subject DN (OCSP CertID)
    key_hash: dict[str, bytes]  # digest name -> hash of the public key (OCSP CertID)

    @classmethod
    def from_row(cls, row: CaIssuer, keystore: KeyStore) -> Issuer:
        """Load an issuer row, precomputing hashes OCSP needs."""
        cert = x509.Certificate.load(row.der)
        subject = cert.subject
        spki: keys.PublicKeyInfo = cert.public_key
        subject_der = subject.dump()
        return cls(
            name=row.name,
            role=row.role,
            parent=row.parent,
            key=SigningKey(keystore, row.key_id, parse_algorithm(row.key_algorithm)),
            der=row.der,
            certificate=cert,
            subject=subject,
            subject_der=subject_der,
            key_id=key_identifier(spki),
            not_before=cert.not_valid_before,
            not_after=cert.not_valid_after,
            name_hash={
                "sha1": hashlib.sha1(subject_der).digest(),  # noqa: S324 - OCSP CertID
                "sha256": hashlib.sha256(subject_der).digest(),
                "sm3": hashlib.new("sm3", subject_der).digest(),
            },
            key_hash={
                "sha1": spki.sha1,
                "sha256": spki.sha256,
                "sm3": hashlib.new("sm3", bytes(spki["public_key"])).digest(),
            },
        )


class Hierarchy:
    """The loaded hierarchy: look up CAs, responders and the TSA by name."""

    def __init__(self, issuers: dict[str, Issuer], sm2_unavailable: str = "") -> None:
        self.issuers = issuers
        # why the SM2 hierarchy is missing (a key store without SM2), "" when it is there
        self.sm2_unavailable = sm2_unavailable
        self._by_key_hash: dict[tuple[str, bytes, bytes], Issuer] = {}
        for issuer in issuers.values():
            if issuer.role in ("root", "issuing"):
                for digest in CERT_ID_DIGESTS:
                    key = (digest, issuer.name_hash[digest], issuer.key_hash[digest])
                    self._by_key_hash[key] = issuer

    def get(self, name: str) -> Issuer:
        """The issuer called ``name``; ``NotFound`` otherwise."""
        try:
            return self.issuers[name]
        except KeyError:
            raise NotFound(f"no CA called {name!r}") from None

    def ca(self, name: str) -> Issuer:
        """A certificate-issuing CA (root or issuing) by name; ``NotFound`` otherwise, and
        ``Sm2NotAvailable`` (FAILED_PRECONDITION) for an SM2 CA the key store cannot hold."""
        issuer = self.issuers.get(name)
        if issuer is None and is_sm2_name(name) and self.sm2_unavailable:
            raise Sm2NotAvailable(
                f"the SM2 hierarchy is not available: {self.sm2_unavailable}",
                [PreconditionViolation("SM2", f"ca/{name}", self.sm2_unavailable)],
            )
        if issuer is None or issuer.role not in ("root", "issuing"):
            known = ", ".join(self.ca_names())
            raise NotFound(f"no CA called {name!r} (known: {known})")
        return issuer

    def ca_names(self) -> list[str]:
        """Names of the roots and the issuing CAs: the ECDSA hierarchy, then the SM2 one."""
        names = [ROOT, *ISSUING_CAS, SM2_ROOT, *[sm2_name(n) for n in ISSUING_CAS]]
        return [n for n in names if n in self.issuers]

    def responder(self, ca: str) -> Issuer:
        """The delegated OCSP responder of ``ca``."""
        return self.get(responder_name(ca))

    def tsa(self, *, sm2: bool = False) -> Issuer:
        """The time-stamping authority (the SM2 one with ``sm2``)."""
        if sm2 and SM2_TSA not in self.issuers and self.sm2_unavailable:
            raise Sm2NotAvailable(f"the SM2 TSA is not available: {self.sm2_unavailable}")
        return self.get(SM2_TSA if sm2 else TSA)

    def by_cert_id(self, digest: str, name_hash: bytes, key_hash: bytes) -> Issuer | None:
        """The CA an OCSP CertID's issuer hashes point to (SHA-1 or SHA-256), or None."""
        return self._by_key_hash.get((digest, name_hash, key_hash))

    def chain(self, ca: str) -> list[Issuer]:
        """``ca`` and its parents up to the root (issuing CA first, root last)."""
        result = []
        current: str | None = ca
        while current is not None:
            issuer = self.get(current)
            result.append(issuer)
            current = issuer.parent
        return result


@dataclass
class _Planned:
    name: str
    role: str
    parent: str | None
    algorithm: KeyAlgorithm
    key_id: str
    der: bytes
    serial: int
    not_before: datetime
    not_after: datetime


def load(db: Database, keystore: KeyStore) -> Hierarchy:
    """The hierarchy as stored (possibly incomplete)."""
    with db.read() as session:
        rows = list(session.scalars(select(CaIssuer)))
    return Hierarchy({row.name: Issuer.from_row(row, keystore) for row in rows})


def _plan_order() -> list[tuple[str, str, str | None]]:
    plan: list[tuple[str, str, str | None]] = []
    for prefix in ("", SM2_PREFIX):
        root = prefix + ROOT
        plan.append((root, "root", None))
        plan += [(prefix + ca, "issuing", root) for ca in ISSUING_CAS]
        plan += [(responder_name(prefix + ca), "ocsp", prefix + ca) for ca in ISSUING_CAS]
        plan.append((prefix + TSA, "tsa", prefix + "service"))
    return plan


def is_sm2_name(name: str) -> bool:
    """True for a CA, responder or TSA of the SM2 hierarchy."""
    return name.startswith(SM2_PREFIX)


def _subject(config: CaConfig, name: str, role: str) -> x509.Name:
    if role == "root":
        cn = config.sm2_root_common_name if is_sm2_name(name) else config.root_common_name
    elif role == "issuing":
        cn = config.issuing_common_name(name)
    elif role == "ocsp":
        cn = config.issuing_common_name(name.removesuffix("-ocsp")) + " OCSP Responder"
    else:
        family = " SM2" if is_sm2_name(name) else ""
        cn = f"{config.organization}{family} Time-Stamping Authority"
    return ordered_name(
        [
            ("country_name", config.country),
            ("organization_name", config.organization),
            ("common_name", cn),
        ]
    )


def _role_settings(config: CaConfig, role: str) -> tuple[str, int]:
    return {
        "root": (config.root_key_algorithm, config.root_validity_days),
        "issuing": (config.issuing_key_algorithm, config.issuing_validity_days),
        "ocsp": (config.responder_key_algorithm, config.responder_validity_days),
        "tsa": (config.tsa_key_algorithm, config.tsa_validity_days),
    }[role]


def _extensions(
    config: CaConfig, role: str, parent: str | None, spki: keys.PublicKeyInfo
) -> list[x509.Extension]:
    if role == "root":
        return [basic_constraints(True), ext("key_usage", set(ROOT_KEY_USAGE), critical=True)]
    if role == "issuing":
        assert parent is not None
        return [
            basic_constraints(True, 0),
            ext("key_usage", set(ISSUING_KEY_USAGE), critical=True),
            ext("certificate_policies", [{"policy_identifier": "any_policy"}]),
            *status_extensions(config, parent, ocsp=False),
        ]
    assert parent is not None
    if role == "ocsp":
        aia_only = status_extensions(config, parent, ocsp=False)[1:]
        return [*profile_extensions(RESPONDER_PROFILE, config, spki.algorithm), *aia_only]
    return [
        *profile_extensions(TSA_PROFILE, config, spki.algorithm),
        *status_extensions(config, parent),
    ]


def bootstrap(db: Database, keystore: KeyStore, config: CaConfig) -> Hierarchy:
    """Create whatever part of the hierarchy is missing and return the complete hierarchy."""
    hierarchy = load(db, keystore)
    missing = [p for p in _plan_order() if p[0] not in hierarchy.issuers]
    sm2_unavailable = ""
    if not missing:
        return hierarchy
    issuers = dict(hierarchy.issuers)
    planned: list[_Planned] = []
    start = now() - timedelta(minutes=5)
    for name, role, parent in missing:
        algorithm_name, days = _role_settings(config, role)
        algorithm = KeyAlgorithm.SM2 if is_sm2_name(name) else parse_algorithm(algorithm_name)
        if is_sm2_name(name):
            if sm2_unavailable:
                continue
            try:
                ref = keystore.generate(f"ca/{name}", algorithm)
            except Sm2NotAvailable as exc:
                # A key store without SM2 (PKCS#11 without the vendor mechanisms): the ECDSA
                # hierarchy works alone; SM2 requests get FAILED_PRECONDITION naming the gap.
                sm2_unavailable = str(exc)
                continue
        else:
            ref = keystore.generate(f"ca/{name}", algorithm)
        spki = keys.PublicKeyInfo.load(ref.public_key_der)
        key = SigningKey(keystore, ref.key_id, algorithm)
        subject = _subject(config, name, role)
        if parent is None:
            signer, issuer_name, issuer_key_id = key, subject, key_identifier(spki)
            not_after = start + timedelta(days=days)
        else:
            parent_issuer = issuers[parent]
            signer = parent_issuer.key
            issuer_name = parent_issuer.subject
            issuer_key_id = parent_issuer.key_id
            parent_end = parent_issuer.certificate.not_valid_after
            not_after = min(start + timedelta(days=days), parent_end)
        serial = random_serial()
        der = build_certificate(
            signer=signer,
            issuer_name=issuer_name,
            issuer_key_id=issuer_key_id,
            subject=subject,
            spki=spki,
            serial=serial,
            not_before=start,
            not_after=not_after,
            extensions=_extensions(config, role, parent, spki),
        )
        item = _Planned(name, role, parent, algorithm, ref.key_id, der, serial, start, not_after)
        planned.append(item)
        issuers[name] = Issuer.from_row(_row(item), keystore)
    if not planned:
        return Hierarchy(issuers, sm2_unavailable)
    try:
        with db.transaction() as session:
            for item in planned:
                session.add(_row(item))
            session.flush()
            for counter in _counter_names():
                if session.get(CaCounter, counter) is None:
                    session.add(CaCounter(name=counter, value=0))
            session.flush()
            audit.append(
                session,
                actor="system:govtrust",
                action="ca.bootstrap",
                target="ca",
                details={"created": [p.name for p in planned]},
            )
    except IntegrityError:
        # Another worker bootstrapped at the same time and won: keep its keys, drop ours.
        for item in planned:
            keystore.destroy(item.key_id)
        loaded = load(db, keystore)
        return Hierarchy(loaded.issuers, sm2_unavailable)
    return Hierarchy(issuers, sm2_unavailable)


def _counter_names() -> list[str]:
    cas = [ROOT, *ISSUING_CAS, SM2_ROOT, *[sm2_name(ca) for ca in ISSUING_CAS]]
    return ["status", *[f"status:{ca}" for ca in cas], *[f"crl:{ca}" for ca in cas]]


def _row(item: _Planned) -> CaIssuer:
    return CaIssuer(
        name=item.name,
        role=item.role,
        parent=item.parent,
        key_id=item.key_id,
        key_algorithm=item.algorithm.value,
        serial=serial_hex(item.serial),
        der=item.der,
        not_before=item.not_before,
        not_after=item.not_after,
        created_at=now(),
    )
