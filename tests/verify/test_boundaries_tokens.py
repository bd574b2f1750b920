"""VerifyIdToken at the edges of a token's life (issue #23 item 3), on SQLite and PostgreSQL.

The verifier accepts the provider's clock skew (``ProviderConfig.clock_skew``, 60 s) on each
side: a token is expired from ``exp + skew`` on (valid one second before), and not yet valid
while ``nbf - skew`` or ``iat - skew`` lies in the future. Tokens are minted by the real provider
on a fixed clock, checked by a verifier whose clock is set to the exact second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.oidc.conftest import OidcEnv, oidc_env  # noqa: F401 - fixture
from tests.oidc.flows import full_login
from tests.verify.test_tokens import check, codes
from verify.report import ReasonCode, Verdict
from verify.service import VerifyContext

ISSUED = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def at(oidc_env: OidcEnv) -> Iterator[Callable[[int], VerifyContext]]:  # noqa: F811
    """``at(n)``: a verifier whose clock reads ISSUED + n seconds."""
    made: list[VerifyContext] = []

    def make(offset: int) -> VerifyContext:
        ctx = VerifyContext(
            oidc_env.platform.db,
            oidc_env.platform.keystore,
            platform=oidc_env.platform,
            provider=oidc_env.provider,
            clock=lambda: ISSUED + timedelta(seconds=offset),
        )
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def minted(oidc_env: OidcEnv) -> tuple[str, dict[str, Any]]:  # noqa: F811
    """(client id, token response) of a login at exactly ISSUED."""
    oidc_env.provider.now = lambda: ISSUED
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        return client_id, full_login(http, client_id, secret, scope="openid profile")


def test_id_token_expiry_at_the_skew_limit(
    oidc_env: OidcEnv,  # noqa: F811
    at: Callable[[int], VerifyContext],
    minted: tuple[str, dict[str, Any]],
) -> None:
    client_id, body = minted
    config = oidc_env.provider.config
    limit = config.id_token_ttl + config.clock_skew  # exp + skew
    report = check(at(limit - 1), body["id_token"], expected_audience=client_id)
    assert report.verdict is Verdict.VALID, report.reasons
    report = check(at(limit), body["id_token"], expected_audience=client_id)
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.TOKEN_EXPIRED]


def test_access_token_expiry_at_the_skew_limit(
    oidc_env: OidcEnv,  # noqa: F811
    at: Callable[[int], VerifyContext],
    minted: tuple[str, dict[str, Any]],
) -> None:
    _client_id, body = minted
    config = oidc_env.provider.config
    limit = config.access_token_ttl + config.clock_skew
    report = check(at(limit - 1), body["access_token"])
    assert ReasonCode.TOKEN_EXPIRED not in codes(report), report.reasons
    assert report.verdict is Verdict.VALID, report.reasons
    report = check(at(limit), body["access_token"])
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.TOKEN_EXPIRED]


def test_issued_in_the_future_beyond_the_skew_is_not_yet_valid(
    oidc_env: OidcEnv,  # noqa: F811
    at: Callable[[int], VerifyContext],
    minted: tuple[str, dict[str, Any]],
) -> None:
    client_id, body = minted
    skew = oidc_env.provider.config.clock_skew
    # the verifier's clock is behind the provider's by exactly the skew: accepted
    report = check(at(-skew), body["id_token"], expected_audience=client_id)
    assert report.verdict is Verdict.VALID, report.reasons
    # one second more: iat lies in the future beyond the skew
    report = check(at(-skew - 1), body["id_token"], expected_audience=client_id)
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.TOKEN_NOT_YET_VALID]


def test_nbf_beyond_the_skew_is_not_yet_valid(
    oidc_env: OidcEnv,  # noqa: F811
    at: Callable[[int], VerifyContext],
) -> None:
    """A token of ours with an ``nbf`` 10 minutes after its ``iat``."""
    provider = oidc_env.provider
    client_id, _secret = oidc_env.register_client()
    provider.ensure_keys()
    nbf = 600
    token = provider._access_token(  # a token the flows never make
        sub="boundary-subject",
        client_id=client_id,
        scopes=["openid"],
        now=ISSUED,
        jti="boundary-nbf",
        extra={"nbf": int(ISSUED.timestamp()) + nbf},
    )
    skew = provider.config.clock_skew
    report = check(at(nbf - skew), token)
    assert ReasonCode.TOKEN_NOT_YET_VALID not in codes(report), report.reasons
    report = check(at(nbf - skew - 1), token)
    assert ReasonCode.TOKEN_NOT_YET_VALID in codes(report)
    assert "nbf" in next(
        r.message for r in report.reasons if r.code is ReasonCode.TOKEN_NOT_YET_VALID
    )
