"""Boundaries of the provider's codes and tokens (issue #23 item 3), on SQLite and PostgreSQL.

The provider's clock is fixed (``Provider.now``) so each check runs exactly at a limit and one
second past it: an authorization code lives ``code_ttl`` seconds (dead AT ``expires_at``), an
access token until its ``exp`` (dead AT ``exp``: the provider itself allows no skew). The code
is bound to the ``redirect_uri`` of its authorization request (RFC 6749 §4.1.3): another
registered URI, or none, is ``invalid_grant`` and does not burn the code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.oidc.conftest import REDIRECT, OidcEnv, pkce_pair
from tests.oidc.flows import authorize, code_from, password_login
from tests.unchanged import unchanged

OTHER_REDIRECT = "https://rp.example.gov.cn/other-cb"


class FixedClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at


def _login_code(oidc_env: OidcEnv, http: Any, client_id: str) -> tuple[str, str]:
    """(code, PKCE verifier) of a fresh password login."""
    verifier, challenge = pkce_pair()
    result = password_login(
        http, authorize(http, client_id, code_challenge=challenge, code_challenge_method="S256")
    )
    return code_from(result)["code"], verifier


def _token(
    http: Any, client_id: str, secret: str | None, code: str, verifier: str, **form: str
) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    data.update(form)
    return http.post("/oidc/token", data=data, auth=(client_id, secret or ""))


def test_code_is_bound_to_the_redirect_uri_of_its_request(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client(redirect_uris=[REDIRECT, OTHER_REDIRECT])
    with oidc_env.http() as http:
        code, verifier = _login_code(oidc_env, http, client_id)
        with unchanged(oidc_env.platform.db):
            # another URI registered for the same client
            other = _token(http, client_id, secret, code, verifier, redirect_uri=OTHER_REDIRECT)
            assert other.status_code == 400, other.text
            assert other.json()["error"] == "invalid_grant"
            assert "redirect_uri" in other.json()["error_description"]
            # no redirect_uri at all
            missing = _token(http, client_id, secret, code, verifier)
            assert missing.status_code == 400, missing.text
            assert missing.json()["error"] == "invalid_grant"
        # neither refusal consumed the code: the request's own URI still gets the tokens
        right = _token(http, client_id, secret, code, verifier, redirect_uri=REDIRECT)
        assert right.status_code == 200, right.text
        assert "id_token" in right.json()


def test_pkce_verifier_of_another_request_is_refused(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        code, verifier = _login_code(oidc_env, http, client_id)
        stranger, _ = pkce_pair()  # a well-formed verifier, of another request
        with unchanged(oidc_env.platform.db):
            wrong = _token(http, client_id, secret, code, stranger, redirect_uri=REDIRECT)
            assert wrong.status_code == 400
            assert wrong.json() == {
                "error": "invalid_grant",
                "error_description": "PKCE verification failed",
            }
            none = _token(http, client_id, secret, code, "", redirect_uri=REDIRECT)
            assert none.json()["error"] == "invalid_grant"
        right = _token(http, client_id, secret, code, verifier, redirect_uri=REDIRECT)
        assert right.status_code == 200, right.text


def test_code_expires_exactly_at_its_ttl(oidc_env: OidcEnv) -> None:
    clock = FixedClock()
    oidc_env.provider.now = clock
    ttl = oidc_env.provider.config.code_ttl
    issued = clock.at
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        code, verifier = _login_code(oidc_env, http, client_id)
        # at issue + ttl: expired (an expired code is not consumed either)
        clock.at = issued + timedelta(seconds=ttl)
        with unchanged(oidc_env.platform.db):
            late = _token(http, client_id, secret, code, verifier, redirect_uri=REDIRECT)
        assert late.status_code == 400, late.text
        assert late.json() == {"error": "invalid_grant", "error_description": "the code is invalid"}
        # one second before: still good
        clock.at = issued + timedelta(seconds=ttl - 1)
        last = _token(http, client_id, secret, code, verifier, redirect_uri=REDIRECT)
        assert last.status_code == 200, last.text


def test_access_token_dies_exactly_at_exp(oidc_env: OidcEnv) -> None:
    clock = FixedClock()
    oidc_env.provider.now = clock
    ttl = oidc_env.provider.config.access_token_ttl
    issued = clock.at
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        code, verifier = _login_code(oidc_env, http, client_id)
        tokens = _token(http, client_id, secret, code, verifier, redirect_uri=REDIRECT).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        clock.at = issued + timedelta(seconds=ttl - 1)
        assert http.get("/oidc/userinfo", headers=bearer).status_code == 200
        intro = http.post(
            "/oidc/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
        )
        assert intro.json()["active"] is True
        assert intro.json()["exp"] == int(issued.timestamp()) + ttl
        clock.at = issued + timedelta(seconds=ttl)
        with unchanged(oidc_env.platform.db):
            assert http.get("/oidc/userinfo", headers=bearer).status_code == 401
            intro = http.post(
                "/oidc/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
            )
            assert intro.json() == {"active": False}
