"""The console's "my certificates": the certificates our CA issued to the logged-in person (and
to the legal person it acts for), with status and validity, each downloadable as PEM.

Thin: the list is :meth:`ca.authority.CertificateAuthority.list_certificates` filtered to the
caller's own identities (what ListCertificates allows a subject), a download is
:meth:`~ca.authority.CertificateAuthority.find` then
:meth:`~ca.authority.CertificateAuthority.authorise_read` — GetCertificate's own check, so
another person's certificate is 403 and nothing is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ca.authority import ListFilter, authority_for, effective_status
from ca.records import CertificateRecord
from govtrust.api.console.texts import TEXTS
from govtrust.db import as_utc
from govtrust.errors import InvalidArgument, PermissionDenied
from govtrust.principal import Principal

if TYPE_CHECKING:
    from govtrust.api.console.kit import Kit

MAX_SHOWN = 100


@dataclass(frozen=True)
class CertificateLine:
    """A certificate as the page shows it."""

    fingerprint: str
    serial: str
    profile: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    status: str  # active | suspended | revoked | expired


def certificate_line(row: CertificateRecord) -> CertificateLine:
    """The shown facts of a stored certificate."""
    return CertificateLine(
        row.fingerprint_sha256,
        row.serial,
        row.profile,
        asn1_x509.Certificate.load(row.der).subject.human_friendly,
        row.issuer,
        as_utc(row.not_before),
        as_utc(row.not_after),
        effective_status(row),
    )


def own_identities(principal: Principal) -> list[str]:
    """The identities whose certificates are the caller's: the person, the legal person."""
    ids = [i for i in (principal.citizen_id, principal.legal_person_id) if i]
    if not ids:
        raise PermissionDenied(f"{principal.actor} is not a person: it has no certificates here")
    return ids


def install(api: APIRouter, kit: Kit) -> None:
    """Add the certificate pages to the console's router."""
    base = kit.base

    @api.get(base + "/certificates")
    async def my_certificates(request: Request) -> Response:
        user = await kit.logged_in(request)
        if isinstance(user, Response):
            return user

        def call() -> list[CertificateLine]:
            authority = authority_for(kit.platform)
            found: list[CertificateLine] = []
            for identity in own_identities(user.principal):
                rows, _next = authority.list_certificates(
                    ListFilter(identity_id=identity), page_size=MAX_SHOWN
                )
                found += [certificate_line(r) for r in rows]
            return sorted(found, key=lambda c: c.not_before, reverse=True)

        lines = await kit.domain(request, user, call)
        if isinstance(lines, Response):
            return lines
        return kit.page(
            request,
            "certificates.html",
            user,
            title=TEXTS[kit.lang(request)]["my_certificates"],
            certificates=lines,
        )

    @api.get(base + "/certificates/{fingerprint}.pem")
    async def pem(request: Request, fingerprint: str) -> Response:
        user = await kit.logged_in(request)
        if isinstance(user, Response):
            return user

        def call() -> tuple[str, bytes]:
            wanted = fingerprint.lower()
            if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
                raise InvalidArgument.field("fingerprint", "a SHA-256 fingerprint in hex")
            authority = authority_for(kit.platform)
            row = authority.find(fingerprint=wanted)
            authority.authorise_read(user.principal, row)
            return row.serial, asn1_pem.armor("CERTIFICATE", row.der)

        found = await kit.domain(request, user, call)
        if isinstance(found, Response):
            return found
        serial, data = found
        return Response(
            data,
            media_type="application/x-pem-file",
            headers={
                "Content-Disposition": f'attachment; filename="{serial}.pem"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )
