"""The signed licence data: GB/T 36903 metadata as canonical JSON in a compact JWS.

:class:`LicenceMetadata` maps Python names to the metadata names used in practice (ZZMC, ZZBS,
CZZTDM, ...); type-specific fields keep their ``KZ_*`` names. The JWS is signed through the key
store by the issuing department's seal key, with the seal certificate chain in ``x5c``, and
references its entry in the issuer's status list (``status.status_list``, IETF Token Status List).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cryptography import x509

from govtrust.audit import canonical_json
from govtrust.errors import InvalidArgument
from license.days import licence_day
from license.errors import LicenceVerificationFailed, Reason
from license.identifiers import parse_identifier
from license.signer import LicenceSigner, VerifiedJws, sign_compact, verify_compact

JWS_TYPE = "licence+jws"
LONG_TERM = "长期"
HOLDER_RESIDENT_ID = "111"
HOLDER_USCC = "001"
_KZ = re.compile(r"KZ_[A-Z0-9_]{1,40}")


@dataclass(frozen=True)
class LicenceMetadata:
    """The metadata of one licence version (GB/T 36903 names in :meth:`to_json`)."""

    name: str  # ZZMC 证照名称
    type_code: str  # ZZLXDM 证照类型代码
    number: str  # ZZBH 证照编号
    identifier: str  # ZZBS 证照标识
    issuer_name: str  # ZZBFJG 颁发机构
    issuer_code: str  # ZZBFJGDM 颁发机构代码
    issue_date: date  # ZZBFRQ 颁发日期
    holder_name: str  # CZZT 持证主体
    holder_code: str  # CZZTDM 持证主体代码
    holder_code_type: str  # CZZTDMLX: 111 resident ID, 001 USCC
    valid_from: date  # ZZYXQQSRQ 有效期起始日期
    valid_until: date | None  # ZZYXQJZRQ 有效期截止日期 (None = 长期)
    fields: Mapping[str, str] = field(default_factory=dict)  # KZ_*
    status_index: int | None = None  # index in the issuer's status list
    status_uri: str | None = None
    previous: str | None = None  # identifier of the version this one replaces

    def to_json(self) -> dict[str, Any]:
        """The metadata as a JSON object with GB/T 36903 names."""
        out: dict[str, Any] = {
            "ZZMC": self.name,
            "ZZLXDM": self.type_code,
            "ZZBH": self.number,
            "ZZBS": self.identifier,
            "ZZBFJG": self.issuer_name,
            "ZZBFJGDM": self.issuer_code,
            "ZZBFRQ": self.issue_date.isoformat(),
            "CZZT": self.holder_name,
            "CZZTDM": self.holder_code,
            "CZZTDMLX": self.holder_code_type,
            "ZZYXQQSRQ": self.valid_from.isoformat(),
            "ZZYXQJZRQ": self.valid_until.isoformat() if self.valid_until else LONG_TERM,
        }
        for key, value in self.fields.items():
            out[key] = value
        if self.status_index is not None:
            out["status"] = {
                "status_list": {"idx": self.status_index, "uri": self.status_uri or ""}
            }
        if self.previous:
            out["previous"] = self.previous
        return out

    def canonical(self) -> bytes:
        """Canonical JSON bytes of :meth:`to_json` (what is signed)."""
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LicenceMetadata:
        """Parse (and check the consistency of) metadata; :class:`LicenceVerificationFailed`."""
        try:
            status = data.get("status", {}).get("status_list") if "status" in data else None
            end = data["ZZYXQJZRQ"]
            meta = cls(
                name=_text(data, "ZZMC"),
                type_code=_text(data, "ZZLXDM"),
                number=_text(data, "ZZBH"),
                identifier=_text(data, "ZZBS"),
                issuer_name=_text(data, "ZZBFJG"),
                issuer_code=_text(data, "ZZBFJGDM"),
                issue_date=date.fromisoformat(_text(data, "ZZBFRQ")),
                holder_name=_text(data, "CZZT"),
                holder_code=_text(data, "CZZTDM"),
                holder_code_type=_text(data, "CZZTDMLX"),
                valid_from=date.fromisoformat(_text(data, "ZZYXQQSRQ")),
                valid_until=None if end == LONG_TERM else date.fromisoformat(end),
                fields={k: str(v) for k, v in data.items() if _KZ.fullmatch(k)},
                status_index=int(status["idx"]) if status else None,
                status_uri=str(status["uri"]) if status else None,
                previous=data.get("previous"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LicenceVerificationFailed(
                Reason.MALFORMED, f"licence metadata incomplete or malformed: {exc}"
            ) from None
        try:  # the signature vouches for the USCCs; only the identifier's own check matters
            ident = parse_identifier(meta.identifier, check_uscc=False)
        except InvalidArgument as exc:
            raise LicenceVerificationFailed(Reason.MALFORMED, f"ZZBS: {exc.message}") from None
        if ident.type_code != meta.type_code or ident.issuer_code != meta.issuer_code:
            raise LicenceVerificationFailed(
                Reason.MALFORMED, "ZZBS does not agree with ZZLXDM / ZZBFJGDM"
            )
        if meta.holder_code_type not in (HOLDER_RESIDENT_ID, HOLDER_USCC):
            raise LicenceVerificationFailed(Reason.MALFORMED, "CZZTDMLX must be 111 or 001")
        return meta


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def sign_licence(signer: LicenceSigner, metadata: LicenceMetadata) -> str:
    """Sign the metadata as a compact JWS (``typ`` ``licence+jws``, chain in ``x5c``)."""
    return sign_compact(signer, metadata.to_json(), typ=JWS_TYPE)


@dataclass(frozen=True)
class VerifiedLicence:
    """Signed licence data that verified: its metadata and who signed it."""

    metadata: LicenceMetadata
    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def verify_licence(
    token: str, roots: Sequence[x509.Certificate], *, at: datetime | None = None
) -> VerifiedLicence:
    """Verify signed licence data against ``roots``; raises :class:`LicenceVerificationFailed`.

    Checks the chain (at ``at``; by default at the earlier of now and the signing certificate's
    expiry, with ZZBFRQ required to fall within the certificate's validity, so long-term
    licences outlive their seal certificate), the signature, the metadata's consistency and
    that the signing certificate belongs to the issuing department: its subject's
    organizationIdentifier must be ``NTRCN-<ZZBFJGDM>`` (so another organisation's certificate
    under the same root cannot sign a licence in a department's name).
    Status (revoked, suspended) and the validity window are separate checks.
    """
    verified: VerifiedJws = verify_compact(
        token, roots, typ=JWS_TYPE, at=at, until_leaf_expiry=True
    )
    metadata = LicenceMetadata.from_json(verified.payload)
    _check_issuer(verified.signer, metadata.issuer_code)
    leaf = verified.signer
    # ZZBFRQ is a Beijing day: compare it with the Beijing days the certificate was valid on
    if (
        not licence_day(leaf.not_valid_before_utc)
        <= metadata.issue_date
        <= licence_day(leaf.not_valid_after_utc)
    ):
        raise LicenceVerificationFailed(
            Reason.CERTIFICATE_EXPIRED, "issued (ZZBFRQ) outside the signing certificate's validity"
        )
    return VerifiedLicence(metadata, verified.signer, verified.chain)


ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")


def signer_uscc(cert: x509.Certificate) -> str | None:
    """The USCC a seal certificate names (organizationIdentifier ``NTRCN-<USCC>``), if any."""
    for attr in cert.subject.get_attributes_for_oid(ORGANIZATION_IDENTIFIER):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode()
        if value.startswith("NTRCN-"):
            return value[len("NTRCN-") :]
    return None


def _check_issuer(cert: x509.Certificate, issuer_code: str) -> None:
    named = signer_uscc(cert)
    if named != issuer_code:
        raise LicenceVerificationFailed(
            Reason.ISSUER_MISMATCH,
            "the signing certificate does not name the issuing department (NTRCN-<ZZBFJGDM>)",
        )
