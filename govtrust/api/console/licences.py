"""The console's licence pages: a holder's licences (citizens their own, a legal person's
representative or agent the company's), each with its status, QR code and documents (PDF / OFD
where issued), its access codes (create, shown once; revoke) and who checked it.

Thin: every route parses, calls :class:`license.access.LicenceAccess` — the same object the
LicenseService servicer calls for ListLicenses, GetLicenseDocument, GrantLicenseAccess and
RevokeLicenseAccess — and renders. The domain decides who is the holder: another's licence is
403 (a licence that does not exist 404) and nothing is recorded.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from govtrust.api.console.routes import _date as form_date
from govtrust.api.console.texts import TEXTS
from govtrust.errors import InvalidArgument, PermissionDenied
from govtrust.http.limits import body_limit
from govtrust.principal import Principal
from idp.oidc.factory import provider_for
from idp.types import IdentityRef
from license.access import CheckRecord, GrantView, LicenceAccess
from license.days import licence_day
from license.issuance import StoredLicence
from license.qr_symbol import render_png
from license.records import effective_status
from license.runtime import runtime_for
from license.signed_data import LicenceMetadata
from license.signer import unverified_payload
from seal.owners import RegistryOwners

if TYPE_CHECKING:
    from govtrust.api.console.kit import Kit
    from govtrust.api.console.routes import User

MEDIA_TYPES = {"pdf": "application/pdf", "ofd": "application/ofd"}
PAGE_SIZE = 100  # per holder; the oldest beyond it are left out (the page says so)


@dataclass(frozen=True)
class LicenceLine:
    """A licence version as the pages show it."""

    identifier: str
    name: str
    number: str
    issuer_name: str
    holder_name: str
    issue_date: date
    valid_from: date
    valid_until: date | None
    status: str  # the effective status (license.records.EffectiveStatus)
    status_reason: str
    version: int
    has_pdf: bool
    has_ofd: bool


def line(stored: StoredLicence, today: date) -> LicenceLine:
    """The shown facts of a stored licence (the metadata of its own stored signed data)."""
    row = stored.row
    meta = LicenceMetadata.from_json(unverified_payload(stored.signed_data))
    return LicenceLine(
        row.identifier,
        meta.name,
        meta.number,
        meta.issuer_name,
        meta.holder_name,
        meta.issue_date,
        meta.valid_from,
        meta.valid_until,
        effective_status(row, today).value,
        row.status_reason,
        row.version,
        stored.document_pdf is not None,
        stored.document_ofd is not None,
    )


def holders_of(principal: Principal, acts_for: Sequence[str] = ()) -> list[IdentityRef]:
    """Whose licences "my licences" shows: the legal person logged in as; else the citizen and
    the legal persons it acts for (``acts_for``; the domain decides which it may list)."""
    if principal.legal_person_id:
        return [IdentityRef(id=principal.legal_person_id)]
    if principal.citizen_id is None:
        raise PermissionDenied(f"{principal.actor} holds no licences (a person's login does)")
    return [IdentityRef(id=i) for i in dict.fromkeys([principal.citizen_id, *acts_for])]


def qr_image(payload: str) -> str:
    """The licence's QR code (its signed QR payload) as a PNG data: URL."""
    return "data:image/png;base64," + base64.b64encode(render_png(payload, scale=3)).decode()


def install(api: APIRouter, kit: Kit) -> None:
    """Add the licence pages to the console's router."""
    base = kit.base

    def access() -> LicenceAccess:
        runtime = runtime_for(kit.platform)
        return LicenceAccess(runtime.service, RegistryOwners(runtime.service.registry))

    def today() -> date:
        return licence_day(datetime.now(UTC))

    @api.get(base + "/licences")
    async def my_licences(request: Request) -> Response:
        user = await kit.logged_in(request)
        if isinstance(user, Response):
            return user

        def call() -> list[tuple[str, list[LicenceLine], bool]]:
            reader = access()
            directory = provider_for(kit.platform).directory
            day = today()
            sections = []
            for holder in holders_of(user.principal, user.owner_ids):
                try:
                    items, more = reader.list_for_holder(
                        user.principal, holder, include_superseded=True, page_size=PAGE_SIZE
                    )
                except PermissionDenied:
                    if holder.id in (user.principal.citizen_id, user.principal.legal_person_id):
                        raise
                    continue  # a company the person acts for in other matters (seal use only)
                known = directory.identity(holder.id or "")
                name = known.name if known is not None else (holder.id or "")
                sections.append((name, [line(s, day) for s in items], bool(more)))
            return sections

        found = await kit.domain(request, user, call)
        if isinstance(found, Response):
            return found
        return kit.page(
            request,
            "licences.html",
            user,
            title=TEXTS[kit.lang(request)]["my_licences"],
            sections=found,
        )

    async def licence_page(
        request: Request, user: User, identifier: str, code: str = "", notice: str = ""
    ) -> Response:
        def load() -> tuple[LicenceLine, str, list[GrantView], list[CheckRecord]]:
            reader = access()
            read = reader.read(user.principal, identifier, what="licence")
            grants = reader.list_grants(user.principal, identifier)
            checks = reader.checks(user.principal, identifier)
            return line(read.licence, today()), read.licence.qr_payload, grants, checks

        found = await kit.domain(request, user, load)
        if isinstance(found, Response):
            return found
        shown, payload, grants, checks = found
        return kit.page(
            request,
            "licence.html",
            user,
            title=shown.name,
            lic=shown,
            qr=qr_image(payload) if payload else "",
            grants=grants,
            checks=checks,
            code=code,
            notice=notice,
            notice_class="ok",
        )

    @api.get(base + "/licences/{identifier}")
    async def licence_get(request: Request, identifier: str) -> Response:
        user = await kit.logged_in(request)
        if isinstance(user, Response):
            return user
        t = TEXTS[kit.lang(request)]
        done = request.query_params.get("done", "")
        notice = t["done"] + t["revoke_code"] if done == "revoked" else ""
        return await licence_page(request, user, identifier, notice=notice)

    @api.get(base + "/licences/{identifier}/document.{fmt}")
    async def document(request: Request, identifier: str, fmt: str) -> Response:
        user = await kit.logged_in(request)
        if isinstance(user, Response):
            return user
        if fmt not in MEDIA_TYPES:
            return kit.refused(request, user, InvalidArgument.field("format", "pdf or ofd"))
        read = await kit.domain(
            request,
            user,
            lambda: access().read(user.principal, identifier, what="document", document_format=fmt),
        )
        if isinstance(read, Response):
            return read
        data = read.licence.document_pdf if fmt == "pdf" else read.licence.document_ofd
        return Response(
            data or b"",
            media_type=MEDIA_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="{identifier}.{fmt}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @api.post(base + "/licences/{identifier}/grants")
    @body_limit(kit.max_form_bytes)
    async def grant(request: Request, identifier: str) -> Response:
        got = await kit.posted(request)
        if isinstance(got, Response):
            return got
        user, form = got

        def call() -> tuple[GrantView, str]:
            until = form_date(form.get("valid_until", ""), "valid_until")
            return access().grant(
                user.principal,
                identifier,
                grantee=None,
                grantee_name=form.get("grantee_name", ""),
                purpose=form.get("purpose", ""),
                valid_from=None,
                valid_until=until,
            )

        made = await kit.domain(request, user, call)
        if isinstance(made, Response):
            return made
        _view, code = made
        # the code is shown once, on this page (never stored in clear, never in a URL)
        return await licence_page(request, user, identifier, code=code)

    @api.post(base + "/licences/{identifier}/grants/{grant_id}/revoke")
    @body_limit(kit.max_form_bytes)
    async def revoke(request: Request, identifier: str, grant_id: str) -> Response:
        got = await kit.posted(request)
        if isinstance(got, Response):
            return got
        user, form = got
        done = await kit.domain(
            request,
            user,
            lambda: access().revoke_grant(user.principal, grant_id, form.get("reason", "")),
        )
        if isinstance(done, Response):
            return done
        return RedirectResponse(f"{base}/licences/{done.identifier}?done=revoked", status_code=303)
