"""VerifyIdToken against our real OIDC provider (both backends): valid ID and access tokens,
expired, wrong audience, revoked, ``alg: none`` and HS256 forged with our public key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwt

from govtrust.errors import InvalidArgument
from idp.types import IdentityKind
from tests.oidc.conftest import OidcEnv, oidc_env  # noqa: F401 - fixture
from tests.oidc.flows import full_login
from tests.unchanged import unchanged
from tests.verify.conftest import VERIFIER
from verify.report import ReasonCode, ReportOptions, TokenKind, Verdict, VerificationReport
from verify.service import VerifyContext
from verify.tokens import TokenCheck, verify_token


@dataclass
class Tokens:
    client_id: str
    secret: str | None
    body: dict[str, Any]


@pytest.fixture
def tokens(oidc_env: OidcEnv) -> Tokens:  # noqa: F811
    """A registered client and the tokens of a full code-flow login of 张三."""
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        return Tokens(
            client_id, secret, full_login(http, client_id, secret, scope="openid profile")
        )


def context(env: OidcEnv, *, shift: timedelta = timedelta(0)) -> VerifyContext:
    return VerifyContext(
        env.platform.db,
        env.platform.keystore,
        platform=env.platform,
        provider=env.provider,
        clock=lambda: datetime.now(UTC) + shift,
    )


@pytest.fixture
def tctx(oidc_env: OidcEnv) -> Iterator[VerifyContext]:  # noqa: F811
    ctx = context(oidc_env)
    yield ctx
    ctx.close()


def check(ctx: VerifyContext, token: str, **kwargs: Any) -> VerificationReport:
    verified = verify_token(
        ctx, VERIFIER, TokenCheck(token, options=ReportOptions(locale="en"), **kwargs)
    )
    verified.audited.result(timeout=30)
    return verified.report


def codes(report: VerificationReport) -> list[ReasonCode]:
    return [r.code for r in report.reasons]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_id_token_carries_the_identity(
    oidc_env: OidcEnv,  # noqa: F811
    tctx: VerifyContext,
    tokens: Tokens,
) -> None:
    client_id, body = tokens.client_id, tokens.body
    report = check(
        tctx, body["id_token"], expected_audience=client_id, expected_nonce="n-0S6_WzA2Mj"
    )
    assert report.verdict is Verdict.VALID, report.reasons
    token = report.token
    assert token is not None and token.kind is TokenKind.ID_TOKEN
    assert token.algorithm == "ES256" and token.key_id
    assert token.issuer == oidc_env.issuer and token.audience == (client_id,)
    assert token.identity is not None and token.identity.id == oidc_env.citizen_id
    assert token.identity.kind is IdentityKind.CITIZEN
    assert not token.revoked and token.expires_at is not None
    assert report.signatures[0].signature_valid
    assert report.warnings == ()
    # without an expected audience: still valid, with a warning that it was not checked
    report = check(tctx, body["id_token"])
    assert report.verdict is Verdict.VALID
    assert [w.code for w in report.warnings] == [ReasonCode.TOKEN_AUDIENCE_MISMATCH]


def test_valid_access_token(
    oidc_env: OidcEnv,  # noqa: F811
    tctx: VerifyContext,
    tokens: Tokens,
) -> None:
    client_id, body = tokens.client_id, tokens.body
    report = check(tctx, body["access_token"], expected_audience=oidc_env.issuer)
    assert report.verdict is Verdict.VALID, report.reasons
    assert report.token is not None and report.token.kind is TokenKind.ACCESS_TOKEN
    assert report.token.client_id == client_id
    assert "openid" in report.token.scopes
    assert report.token.identity is not None
    assert report.token.identity.id == oidc_env.citizen_id
    # asked for an ID token but given an access token
    report = check(tctx, body["access_token"], kind=TokenKind.ID_TOKEN)
    assert report.verdict is Verdict.INVALID and codes(report) == [ReasonCode.FORMAT_ERROR]


def test_expired_token(
    oidc_env: OidcEnv,  # noqa: F811
    tokens: Tokens,
) -> None:
    client_id, body = tokens.client_id, tokens.body
    later = context(oidc_env, shift=timedelta(hours=2))
    try:
        report = check(later, body["id_token"], expected_audience=client_id)
        assert report.verdict is Verdict.INVALID
        assert codes(report) == [ReasonCode.TOKEN_EXPIRED]
        assert "expired at" in report.reasons[0].message
        assert report.token is not None and report.token.identity is not None
    finally:
        later.close()


def test_wrong_audience(tctx: VerifyContext, tokens: Tokens) -> None:
    body = tokens.body
    report = check(tctx, body["id_token"], expected_audience="some-other-client")
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.TOKEN_AUDIENCE_MISMATCH]
    assert "some-other-client" in report.reasons[0].message
    report = check(tctx, body["id_token"], expected_nonce="another-nonce")
    assert codes(report) == [ReasonCode.TOKEN_AUDIENCE_MISMATCH]


def test_revoked_tokens(
    oidc_env: OidcEnv,  # noqa: F811
    tctx: VerifyContext,
    tokens: Tokens,
) -> None:
    client_id, body = tokens.client_id, tokens.body
    assert check(tctx, body["access_token"]).verdict is Verdict.VALID
    with oidc_env.http() as http:  # the client revokes its refresh token: the grant ends
        response = http.post(
            "/oidc/revoke",
            data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
            auth=(client_id, tokens.secret or ""),
        )
        assert response.status_code == 200
    for token in (body["access_token"], body["id_token"]):
        report = check(
            tctx, token, expected_audience=client_id if token == body["id_token"] else ""
        )
        assert report.verdict is Verdict.INVALID, token
        assert ReasonCode.TOKEN_REVOKED in codes(report)
        assert report.token is not None and report.token.revoked


def test_alg_none_is_rejected(tctx: VerifyContext, tokens: Tokens) -> None:
    client_id, body = tokens.client_id, tokens.body
    header = jwt.get_unverified_header(body["id_token"])
    claims = jwt.get_unverified_claims(body["id_token"])
    forged = (
        f"{b64(json.dumps({**header, 'alg': 'none'}).encode())}.{b64(json.dumps(claims).encode())}."
    )
    report = check(tctx, forged, expected_audience=client_id)
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.TOKEN_ALGORITHM_REJECTED]
    assert report.token is not None and report.token.identity is None  # nothing unproven said
    assert not report.signatures[0].signature_valid


def test_hs256_forged_with_our_public_key_is_rejected(
    oidc_env: OidcEnv,  # noqa: F811
    tctx: VerifyContext,
    tokens: Tokens,
) -> None:
    client_id, body = tokens.client_id, tokens.body
    header = jwt.get_unverified_header(body["id_token"])
    claims = jwt.get_unverified_claims(body["id_token"])
    key = oidc_env.provider.keys.lookup(header["kid"])
    assert key is not None
    der = oidc_env.platform.keystore.public_key(key.keystore_key_id)
    for secret in (
        der,
        serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ):
        head = b64(json.dumps({**header, "alg": "HS256"}).encode())
        payload = b64(json.dumps({**claims, "sub": "attacker"}).encode())
        mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
        report = check(tctx, f"{head}.{payload}.{b64(mac)}", expected_audience=client_id)
        assert report.verdict is Verdict.INVALID
        assert codes(report) == [ReasonCode.TOKEN_ALGORITHM_REJECTED]
        assert report.token is not None and report.token.subject == ""


def test_tampered_claims_and_unknown_key(tctx: VerifyContext, tokens: Tokens) -> None:
    client_id, body = tokens.client_id, tokens.body
    head, payload, signature = body["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered = f"{head}.{b64(json.dumps({**claims, 'sub': 'x'}).encode())}.{signature}"
    report = check(tctx, tampered, expected_audience=client_id)
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.SIGNATURE_INVALID]
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    other = f"{b64(json.dumps({**header, 'kid': 'nope'}).encode())}.{payload}.{signature}"
    assert codes(check(tctx, other)) == [ReasonCode.TOKEN_UNKNOWN_KEY]


@pytest.mark.parametrize("token", ["", "abc", "a.b", "!!.??.xx", "e30.bm90anNvbg.x"])
def test_malformed_token_is_invalid_argument(tctx: VerifyContext, token: str) -> None:
    with unchanged(tctx.db, tctx.keystore), pytest.raises(InvalidArgument) as info:
        verify_token(tctx, VERIFIER, TokenCheck(token))
    assert info.value.violations[0].field == "token"
