"""The OpenID Provider metadata document (OIDC Discovery §3)."""

from __future__ import annotations

from typing import Any

from idp.oidc.clients import AUTH_METHODS, GRANT_TYPES, SCOPES
from idp.oidc.config import ACR_VALUES, ProviderConfig
from idp.oidc.grants import ASSERTION_ALGORITHMS


def discovery_document(config: ProviderConfig) -> dict[str, Any]:
    """The OpenID Provider metadata (OIDC Discovery §3) for ``config``'s issuer."""
    e = config.endpoint
    return {
        "issuer": config.issuer,
        "authorization_endpoint": e("/oidc/authorize"),
        "token_endpoint": e("/oidc/token"),
        "userinfo_endpoint": e("/oidc/userinfo"),
        "jwks_uri": e("/oidc/jwks"),
        "introspection_endpoint": e("/oidc/introspect"),
        "revocation_endpoint": e("/oidc/revoke"),
        "end_session_endpoint": e("/oidc/end_session"),
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "sid",
            "azp",
            "at_hash",
            "name",
            "birthdate",
            "gender",
            "updated_at",
            "email",
            "email_verified",
            "phone_number",
            "phone_number_verified",
            "address",
            "resident_id_number",
            "legal_person",
            "local_account_id",
            "department",
            "identity_kind",
            "assurance_level",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "acr_values_supported": list(ACR_VALUES),
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": ["zh-CN", "en"],
        "claim_types_supported": ["normal"],
        "authorization_response_iss_parameter_supported": True,
    }
