"""Tables of the certificate authority.

* ``ca_issuers``: every certificate of our own hierarchy (root, issuing CAs, OCSP responders,
  TSA) with the key-store id of its key; looked up by name.
* ``ca_certificates``: every end-entity certificate issued, with its lifecycle status. Serial
  numbers are 128 random bits, stored as upper-case hex, unique per issuer (DB constraint).
* ``ca_crls``: CRLs as published (full and delta share one CRL-number sequence per issuer).
* ``ca_ocsp_responses``: the pre-produced OCSP response of each certificate (served from cache).
* ``ca_tsa_tokens``: one row per time-stamp token (serial, time, imprint) for accountability.
* ``ca_counters``: small named counters (the OCSP status epoch other workers watch).
* ``ca_key_recoveries``: requests to recover an escrowed encryption key (:mod:`ca.recovery`):
  legal basis, recipient, the two approvals and the delivery.

A signing certificate and the encryption certificate the key management centre issued with it
(:mod:`ca.kmc`) name each other in ``paired_with``; the encryption certificate's
``escrow_key_id`` is its escrowed key in the key store (its ``key_id`` stays empty: the key does
not sign).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from govtrust.db import Base


class CaIssuer(Base):
    """One certificate of our hierarchy: root, issuing CA, OCSP responder or TSA."""

    __tablename__ = "ca_issuers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # root | issuing | ocsp | tsa
    parent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_id: Mapped[str] = mapped_column(String(64))
    key_algorithm: Mapped[str] = mapped_column(String(32))
    serial: Mapped[str] = mapped_column(String(40))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CaCertificate(Base):
    """One end-entity certificate issued by one of our CAs, with its status."""

    __tablename__ = "ca_certificates"
    __table_args__ = (
        UniqueConstraint("issuer", "serial"),
        Index("ix_ca_certificates_issuer_status_epoch", "issuer", "status_epoch"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    issuer: Mapped[str] = mapped_column(ForeignKey("ca_issuers.name"), index=True)
    serial: Mapped[str] = mapped_column(String(40), index=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    profile: Mapped[str] = mapped_column(String(32), index=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    identity_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    seal_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    system_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    subject: Mapped[str] = mapped_column(Text)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    key_algorithm: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    identity_salt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # active|suspended|revoked
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revocation_reason: Mapped[int | None] = mapped_column(Integer, nullable=True)
    invalidity_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # the issuer's status epoch (``ca.context.issuer_epoch_name``) its last status change set,
    # 0 while it never changed: a delta CRL lists the changes past its base's epoch
    status_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    renewed_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    renewed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    paired_with: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    escrow_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CaKeyRecovery(Base):
    """One request to recover an escrowed encryption key, under dual control.

    ``status``: ``pending`` (no or one approval) → ``approved`` (two distinct officers) →
    ``delivered`` (enveloped to the recipient certificate's public key).
    """

    __tablename__ = "ca_key_recoveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("ca_certificates.id"), index=True)
    escrow_key_id: Mapped[str] = mapped_column(String(64))
    legal_basis: Mapped[str] = mapped_column(Text)
    recipient_certificate_id: Mapped[str] = mapped_column(ForeignKey("ca_certificates.id"))
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)
    first_approver: Mapped[str | None] = mapped_column(String(255), nullable=True)
    first_approved_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    second_approver: Mapped[str | None] = mapped_column(String(255), nullable=True)
    second_approved_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    delivered_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CaCrl(Base):
    """One published CRL (full or delta)."""

    __tablename__ = "ca_crls"
    __table_args__ = (UniqueConstraint("issuer", "crl_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(ForeignKey("ca_issuers.name"), index=True)
    crl_number: Mapped[int] = mapped_column(BigInteger)
    delta: Mapped[bool] = mapped_column(Boolean)
    base_crl_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entry_count: Mapped[int] = mapped_column(Integer)
    status_epoch: Mapped[int] = mapped_column(BigInteger)  # issuer's status epoch when built
    der: Mapped[bytes] = mapped_column(LargeBinary)


class CaOcspResponse(Base):
    """The pre-produced (nonce-less, SHA-1 CertID) OCSP response of one certificate."""

    __tablename__ = "ca_ocsp_responses"

    certificate_id: Mapped[str] = mapped_column(ForeignKey("ca_certificates.id"), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_update: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class CaTsaToken(Base):
    """One issued time-stamp token."""

    __tablename__ = "ca_tsa_tokens"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    gen_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    policy: Mapped[str] = mapped_column(String(128))
    hash_algorithm: Mapped[str] = mapped_column(String(16))
    message_imprint: Mapped[str] = mapped_column(String(128))


class CaCounter(Base):
    """A named counter (``ocsp-epoch``: bumped on each status change, watched by caches)."""

    __tablename__ = "ca_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
