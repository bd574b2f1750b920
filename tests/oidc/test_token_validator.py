"""The one token validator (``idp/oidc/tokens.py``): one specific fault per refusal (#15 item 2)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from idp.oidc.tokens import ClaimFault, ClaimFinding, TokenFault, TokenRejected, TokenValidator
from tests.oidc.conftest import ADMIN, OidcEnv
from tests.unchanged import unchanged


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _access_token(env: OidcEnv) -> str:
    reg = env.provider.clients.register(
        ADMIN, client_name="validator test", grant_types=["client_credentials"]
    )
    with env.http() as http:
        response = http.post(
            "/oidc/token",
            data={"grant_type": "client_credentials"},
            auth=(reg.client.client_id, reg.client_secret or ""),
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _with_header(token: str, **changes: Any) -> str:
    head, body, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header.update(changes)
    return f"{_b64(json.dumps(header).encode())}.{body}.{sig}"


def _fault(validator: TokenValidator, token: str) -> TokenFault:
    with pytest.raises(TokenRejected) as caught:
        header, claims = validator.signed(token)
        validator.access_claims(header, claims, float(claims["exp"]) - 1)
    return caught.value.fault


def test_each_fault_is_named(sqlite_env: OidcEnv) -> None:
    validator = sqlite_env.provider.tokens
    token = _access_token(sqlite_env)
    header, claims = validator.signed(token)
    checked = validator.access_claims(header, claims, float(claims["exp"]) - 1)
    assert checked.jti == claims["jti"] and checked.grant_id is None

    other_alg = "RS256" if header["alg"] == "ES256" else "ES256"
    head, body, sig = token.split(".")
    assert _fault(validator, "a.b") is TokenFault.MALFORMED
    assert _fault(validator, _with_header(token, alg="none")) is TokenFault.ALGORITHM_REJECTED
    assert _fault(validator, _with_header(token, alg="HS256")) is TokenFault.ALGORITHM_REJECTED
    assert _fault(validator, _with_header(token, kid="nope")) is TokenFault.UNKNOWN_KEY
    mismatch = _with_header(token, alg=other_alg)
    assert _fault(validator, mismatch) is TokenFault.ALGORITHM_MISMATCH
    assert _fault(validator, f"{head}.{body}.{sig[:-4]}AAAA") is TokenFault.BAD_SIGNATURE
    db = sqlite_env.platform.db
    with unchanged(db), pytest.raises(TokenRejected) as caught:
        validator.access_claims({**header, "typ": "JWT"}, claims, float(claims["exp"]) - 1)
    assert caught.value.fault is TokenFault.NOT_ACCESS_TOKEN
    with unchanged(db), pytest.raises(TokenRejected) as caught:
        validator.access_claims(header, {**claims, "iss": "https://elsewhere"}, 0.0)
    assert caught.value.fault is TokenFault.CLAIMS_REJECTED


def test_expiry_allows_the_clock_skew_and_no_more(sqlite_env: OidcEnv) -> None:
    strict = sqlite_env.provider.tokens
    lenient = TokenValidator(strict.keys, strict.issuer, clock_skew=60)
    header, claims = strict.signed(_access_token(sqlite_env))
    exp = float(claims["exp"])
    strict.access_claims(header, claims, exp - 1)
    db = sqlite_env.platform.db
    with unchanged(db), pytest.raises(TokenRejected) as caught:
        strict.access_claims(header, claims, exp)
    assert caught.value.fault is TokenFault.EXPIRED
    lenient.access_claims(header, claims, exp + 59)
    with unchanged(db), pytest.raises(TokenRejected) as caught:
        lenient.access_claims(header, claims, exp + 60)
    assert caught.value.fault is TokenFault.EXPIRED


def test_check_claims_reports_every_finding_in_order(sqlite_env: OidcEnv) -> None:
    """The one claims check (used by introspection and VerifyIdToken) names each fault."""
    validator = sqlite_env.provider.tokens
    header, claims = validator.signed(_access_token(sqlite_env))
    exp, iat = float(claims["exp"]), float(claims["iat"])
    clean = validator.check_claims(header, claims, iat, expected_audience=validator.issuer)
    assert clean.access and clean.findings == ()
    assert clean.audience == (validator.issuer,) and clean.expires_at is not None
    unchecked = validator.check_claims(header, claims, iat)
    assert unchecked.findings == (ClaimFinding(ClaimFault.AUDIENCE_NOT_CHECKED),)
    assert unchecked.findings[0].is_warning

    forged = {**claims, "iss": "https://elsewhere", "nbf": exp, "exp": True}
    checked = validator.check_claims(
        header,
        forged,
        iat,
        clock_skew=5,
        expected_access=False,
        expected_audience="someone-else",
        expected_nonce="n-1",
    )
    assert checked.findings == (
        ClaimFinding(ClaimFault.WRONG_KIND),
        ClaimFinding(ClaimFault.ISSUER_MISMATCH),
        ClaimFinding(ClaimFault.EXPIRED),  # a boolean is no NumericDate
        ClaimFinding(ClaimFault.NOT_YET_VALID, "nbf"),
        ClaimFinding(ClaimFault.AUDIENCE_MISMATCH),
        ClaimFinding(ClaimFault.NONCE_MISMATCH),
    )
    assert checked.issuer == "https://elsewhere" and checked.expires_at is None
    assert not any(f.is_warning for f in checked.findings)
    # nbf just inside the skew is no finding; iat in the future is
    assert ClaimFault.NOT_YET_VALID not in {
        f.fault
        for f in validator.check_claims(
            header, {**claims, "nbf": iat + 5}, iat, clock_skew=5, expected_audience="x"
        ).findings
    }
    future = validator.check_claims(header, {**claims, "iat": iat + 6}, iat, clock_skew=5)
    assert ClaimFinding(ClaimFault.NOT_YET_VALID, "iat") in future.findings
