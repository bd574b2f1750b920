"""Helpers that drive the browser side of the code flow through a TestClient."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from fastapi.testclient import TestClient

from tests.oidc.conftest import PASSWORD, REDIRECT, pem, pkce_pair, query_of, sign_challenge


def form_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in page"
    return match.group(1)


def challenge_of(html: str) -> str:
    match = re.search(r'id="challenge">([^<]+)<', html)
    assert match
    return match.group(1)


def authorize(http: TestClient, client_id: str, **extra: str) -> Any:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid profile",
        "state": "st-1",
        "nonce": "n-0S6_WzA2Mj",
    }
    params.update(extra)
    params = {k: v for k, v in params.items() if v is not None}
    return http.get("/oidc/authorize?" + urlencode(params))


def follow_to_page(http: TestClient, response: Any) -> tuple[str, str]:
    """Follow a redirect to an interaction page; returns (interaction path, html)."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/oidc/interaction/"), location
    page = http.get(location)
    assert page.status_code == 200, page.text
    return location, page.text


def password_login(
    http: TestClient,
    response: Any,
    *,
    login: str = "zhangsan",
    password: str = PASSWORD,
    consent: bool = True,
) -> Any:
    """From an authorize response that shows the login page, log in (and consent)."""
    path, html = follow_to_page(http, response)
    result = post_password(http, path, html, login=login, password=password)
    return finish_consent(http, result) if consent else result


def post_password(
    http: TestClient, path: str, html: str, *, login: str = "zhangsan", password: str = PASSWORD
) -> Any:
    """Submit the password form of the login page ``html`` at ``path`` (the step alone, so a
    test can run just it under ``unchanged``)."""
    return http.post(
        f"{path}/password",
        data={"csrf": form_value(html, "csrf"), "login_name": login, "password": password},
    )


def finish_consent(http: TestClient, result: Any) -> Any:
    if result.status_code == 303 and result.headers["location"].startswith("/oidc/interaction/"):
        path, html = follow_to_page(http, result)
        assert "consent" in html
        result = http.post(
            f"{path}/consent", data={"csrf": form_value(html, "csrf"), "decision": "allow"}
        )
    return result


def certificate_login(http: TestClient, response: Any, key: Any, cert: Any) -> Any:
    path, html = follow_to_page(http, response)
    return post_certificate(http, path, html, key, cert)


def post_certificate(http: TestClient, path: str, html: str, key: Any, cert: Any) -> Any:
    """Sign the login page's challenge with ``key`` and submit it with ``cert`` (the step
    alone, so a test can run just it under ``unchanged``)."""
    return http.post(
        f"{path}/certificate",
        data={
            "csrf": form_value(html, "csrf"),
            "certificate": pem(cert),
            "signature": sign_challenge(key, challenge_of(html)),
        },
    )


def code_from(result: Any) -> dict[str, str]:
    assert result.status_code == 303, result.text
    location = result.headers["location"]
    assert location.startswith(REDIRECT), location
    return query_of(location)


def exchange(
    http: TestClient, client_id: str, secret: str | None, code: str, verifier: str | None = None
) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier:
        data["code_verifier"] = verifier
    if secret is None:
        data["client_id"] = client_id
        return http.post("/oidc/token", data=data)
    return http.post("/oidc/token", data=data, auth=(client_id, secret))


def full_login(
    http: TestClient, client_id: str, secret: str | None, **extra: str
) -> dict[str, Any]:
    """Authorize, log in with a password, consent, exchange the code: the token response."""
    verifier, challenge = pkce_pair()
    extra.setdefault("code_challenge", challenge)
    extra.setdefault("code_challenge_method", "S256")
    result = password_login(http, authorize(http, client_id, **extra))
    params = code_from(result)
    response = exchange(http, client_id, secret, params["code"], verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
