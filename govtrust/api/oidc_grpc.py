"""gRPC adapter of the OIDC provider: the IdentityService client RPCs and IntrospectToken, plus
the bearer-token resolver for every gRPC call.

Merge into the IdentityService servicer with the mixin (the servicer must expose
``self.oidc_platform``), e.g.::

    class IdentityServicer(OidcClientRpcs, identity_pb2_grpc.IdentityServiceServicer):
        def __init__(self, registry, platform):
            self.registry = registry
            self.oidc_platform = platform

and install the resolver once at server start: ``install_token_resolver()``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf.timestamp_pb2 import Timestamp

from govtrust.db import is_connection_fault
from govtrust.errors import InvalidArgument, PermissionDenied, Unauthenticated
from govtrust.principal import Principal
from govtrust.rpc.context import current_principal
from govtrust.rpc.offload import run_sync
from govtrust.v1 import common_pb2, identity_pb2
from idp.oidc.clients import Client
from idp.oidc.directory import IdentityInfo
from idp.oidc.factory import provider_for

if TYPE_CHECKING:
    from govtrust.platform import Platform

Context = Any

_CLIENT_TYPE = {
    identity_pb2.CLIENT_TYPE_CONFIDENTIAL: "confidential",
    identity_pb2.CLIENT_TYPE_PUBLIC: "public",
}
_GRANT = {
    identity_pb2.AUTHORIZATION_GRANT_TYPE_AUTHORIZATION_CODE: "authorization_code",
    identity_pb2.AUTHORIZATION_GRANT_TYPE_REFRESH_TOKEN: "refresh_token",
    identity_pb2.AUTHORIZATION_GRANT_TYPE_CLIENT_CREDENTIALS: "client_credentials",
}
_METHOD = {
    identity_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC: "client_secret_basic",
    identity_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_POST: "client_secret_post",
    identity_pb2.TOKEN_ENDPOINT_AUTH_METHOD_PRIVATE_KEY_JWT: "private_key_jwt",
    identity_pb2.TOKEN_ENDPOINT_AUTH_METHOD_NONE: "none",
}
_SUBJECT = {
    identity_pb2.SUBJECT_TYPE_PUBLIC: "public",
    identity_pb2.SUBJECT_TYPE_PAIRWISE: "pairwise",
}
_MODE = {
    identity_pb2.CONNECTION_MODE_UNIFIED: "unified",
    identity_pb2.CONNECTION_MODE_MAPPED: "mapped",
}
_KIND = {
    "citizen": common_pb2.IDENTITY_KIND_CITIZEN,
    "legal_person": common_pb2.IDENTITY_KIND_LEGAL_PERSON,
    "staff": common_pb2.IDENTITY_KIND_STAFF,
}
_TOKEN_KIND = {
    "access_token": common_pb2.TOKEN_KIND_ACCESS_TOKEN,
    "refresh_token": common_pb2.TOKEN_KIND_REFRESH_TOKEN,
}
_STATUS = {
    "active": common_pb2.IDENTITY_STATUS_ACTIVE,
    "suspended": common_pb2.IDENTITY_STATUS_SUSPENDED,
    "cancelled": common_pb2.IDENTITY_STATUS_CANCELLED,
}


def _rev(mapping: dict[Any, str]) -> dict[str, Any]:
    return {v: k for k, v in mapping.items()}


def _ts(moment: datetime | int | None) -> Timestamp | None:
    if moment is None:
        return None
    ts = Timestamp()
    if isinstance(moment, int):
        ts.FromSeconds(moment)
    else:
        ts.FromDatetime(moment.astimezone(UTC).replace(tzinfo=None))
    return ts


def client_pb(client: Client) -> identity_pb2.OidcClient:
    """The protobuf view of a client (never the secret)."""
    return identity_pb2.OidcClient(
        client_id=client.client_id,
        client_name=client.client_name,
        client_type=_rev(_CLIENT_TYPE)[client.client_type],
        redirect_uris=list(client.redirect_uris),
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
        backchannel_logout_uri=client.backchannel_logout_uri,
        grant_types=[_rev(_GRANT)[g] for g in client.grant_types],
        token_endpoint_auth_method=_rev(_METHOD)[client.token_endpoint_auth_method],
        jwks_uri=client.jwks_uri,
        jwks=client.jwks,
        allowed_scopes=list(client.allowed_scopes),
        subject_type=_rev(_SUBJECT)[client.subject_type],
        sector_identifier=client.sector_identifier,
        connection_mode=_rev(_MODE).get(client.connection_mode, 0),
        system_id=client.system_id,
        id_token_signing_alg=client.id_token_signing_alg,
        created_at=_ts(client.created_at),
        updated_at=_ts(client.updated_at),
    )


def _page_token(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode() if after else ""


def _after(token: str) -> str:
    if not token:
        return ""
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "not a token from a previous response") from None
    if not isinstance(value, str):
        raise InvalidArgument.field("page_token", "not a token from a previous response")
    return value


class OidcClientRpcs:
    """IdentityService RPCs of the OIDC provider (mix into the IdentityService servicer)."""

    oidc_platform: Platform

    async def RegisterClient(
        self, request: identity_pb2.RegisterClientRequest, context: Context
    ) -> identity_pb2.RegisterClientResponse:
        """Register a relying party (admin); the secret is returned only here."""
        provider = provider_for(self.oidc_platform)
        client_type = _CLIENT_TYPE.get(request.client_type, "confidential")
        result = await run_sync(
            lambda: provider.clients.register(
                current_principal(),
                client_name=request.client_name,
                client_type=client_type,
                redirect_uris=list(request.redirect_uris),
                post_logout_redirect_uris=list(request.post_logout_redirect_uris),
                backchannel_logout_uri=request.backchannel_logout_uri,
                grant_types=[_GRANT[g] for g in request.grant_types if g in _GRANT] or None,
                token_endpoint_auth_method=_METHOD.get(request.token_endpoint_auth_method, ""),
                jwks_uri=request.jwks_uri,
                jwks=request.jwks,
                allowed_scopes=list(request.allowed_scopes) or None,
                subject_type=_SUBJECT.get(request.subject_type, "public"),
                sector_identifier=request.sector_identifier,
                connection_mode=_MODE.get(request.connection_mode, ""),
                system_id=request.system_id,
                id_token_signing_alg=request.id_token_signing_alg or "ES256",
                client_id=request.client_id,
            )
        )
        return identity_pb2.RegisterClientResponse(
            client=client_pb(result.client), client_secret=result.client_secret or ""
        )

    async def GetClient(
        self, request: identity_pb2.GetClientRequest, context: Context
    ) -> identity_pb2.GetClientResponse:
        """One client (admin or verifier)."""
        current_principal().require_role("admin", "verifier")
        if not request.client_id:
            raise InvalidArgument.field("client_id", "required")
        provider = provider_for(self.oidc_platform)
        client = await run_sync(provider.clients.get, request.client_id)
        return identity_pb2.GetClientResponse(client=client_pb(client))

    async def ListClients(
        self, request: identity_pb2.ListClientsRequest, context: Context
    ) -> identity_pb2.ListClientsResponse:
        """Clients ordered by id, paged (admin or verifier)."""
        current_principal().require_role("admin", "verifier")
        if request.page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        provider = provider_for(self.oidc_platform)
        clients, last = await run_sync(
            lambda: provider.clients.list(
                page_size=request.page_size, after=_after(request.page_token)
            )
        )
        return identity_pb2.ListClientsResponse(
            clients=[client_pb(c) for c in clients], next_page_token=_page_token(last)
        )

    async def RemoveClient(
        self, request: identity_pb2.RemoveClientRequest, context: Context
    ) -> identity_pb2.RemoveClientResponse:
        """Remove a client and revoke its tokens (admin)."""
        if not request.client_id:
            raise InvalidArgument.field("client_id", "required")
        provider = provider_for(self.oidc_platform)
        count = await run_sync(provider.clients.remove, current_principal(), request.client_id)
        return identity_pb2.RemoveClientResponse(
            client_id=request.client_id, revoked_token_count=count
        )

    async def IntrospectToken(
        self, request: identity_pb2.IntrospectTokenRequest, context: Context
    ) -> identity_pb2.IntrospectTokenResponse:
        """RFC 7662 semantics over gRPC for business systems (verifier or admin)."""
        current_principal().require_role("verifier", "admin")
        if not request.token:
            raise InvalidArgument.field("token", "required")
        return await run_sync(introspect_pb, self.oidc_platform, request.token)


def introspect_pb(platform: Platform, token: str) -> identity_pb2.IntrospectTokenResponse:
    """Introspect an access token (JWT) or refresh token into the protobuf response."""
    details = provider_for(platform).token_details(token)
    if details is None:
        return identity_pb2.IntrospectTokenResponse(active=False)
    claims = details.claims
    response = identity_pb2.IntrospectTokenResponse(
        active=True,
        token_kind=_TOKEN_KIND[details.kind],
        scopes=str(claims.get("scope", "")).split(),
        client_id=str(claims.get("client_id", "")),
        subject=str(claims.get("sub", "")),
        issuer=str(claims.get("iss", "")),
        audience=[claims["aud"]] if isinstance(claims.get("aud"), str) else [],
        issued_at=_ts(claims.get("iat")),
        expires_at=_ts(claims.get("exp")),
        auth_time=_ts(claims.get("auth_time")),
        jwt_id=str(claims.get("jti", "")),
        acr=str(claims.get("acr", "")),
        session_id=str(claims.get("sid", "")),
        amr=list(details.amr),
        local_account_id=details.local_account_id,
    )
    if details.identity is not None:
        response.identity.CopyFrom(_identity_pb(details.identity))
    if details.acting_for is not None:
        response.acting_for.CopyFrom(_identity_pb(details.acting_for))
    return response


def _identity_pb(ident: IdentityInfo) -> common_pb2.IdentitySummary:
    return _summary(ident.id, ident.kind, ident.name, ident.status, ident.assurance_level)


def _summary(
    identity_id: str, kind: str, name: str, status: str, level: int
) -> common_pb2.IdentitySummary:
    summary = common_pb2.IdentitySummary(id=identity_id, display_name=name)
    summary.kind = _KIND.get(kind, common_pb2.IDENTITY_KIND_UNSPECIFIED)
    summary.status = _STATUS.get(status, common_pb2.IDENTITY_STATUS_UNSPECIFIED)
    if level in (1, 2, 3):
        summary.assurance_level = common_pb2.AssuranceLevel.Value(f"ASSURANCE_LEVEL_{level}")
    return summary


def token_resolver(platform: Platform, token: str) -> Principal:
    """The gRPC bearer-token resolver: our access tokens → principals (else Unauthenticated).
    A database that cannot be reached is no verdict on the token: that error passes through
    (UNAVAILABLE, retryable) rather than reading as a bad token."""
    try:
        return provider_for(platform).principal_for_token(token)
    except (Unauthenticated, PermissionDenied):
        raise
    except Exception as exc:
        if is_connection_fault(exc):
            raise
        raise Unauthenticated("the bearer token is not valid") from exc


def install_token_resolver() -> None:
    """Install :func:`token_resolver` as the platform's gRPC bearer-token resolver."""
    from govtrust.rpc.auth import set_token_resolver

    set_token_resolver(token_resolver)
