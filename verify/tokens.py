"""VerifyIdToken: an ID token or access token of our identity provider → the identity it carries.

The header is never trusted to choose how to verify: ``alg: none`` and every HS* algorithm are
rejected before any cryptography (an HS256 token "signed" with our public key is the classic
forgery), the key is looked up by ``kid`` in our own JWKS only, the header's ``alg`` must be that
key's algorithm, and python-jose is called with exactly that one algorithm. Then issuer,
audience, expiry (with the provider's clock skew), nonce, and revocation: for access tokens the
provider's token store (revoked ``jti`` or grant), for ID tokens the grant of its session.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from hsm.jws import b64url_decode
from idp.oidc.grant_state import GrantStateLookup
from idp.oidc.tokens import (
    ACCESS_TOKEN_TYP,
    CheckedClaims,
    ClaimFault,
    ClaimFinding,
    TokenFault,
    TokenRejected,
    claim_strings,
    numeric_date,
)
from idp.types import IdentityKind, IdentityStatus, IdentitySummary
from verify.report import (
    EvidenceKind,
    Reason,
    ReasonCode,
    ReportOptions,
    SignatureFormat,
    SignatureReport,
    TokenKind,
    TokenReport,
    build_report,
    tr,
    verdict_of,
)

if TYPE_CHECKING:
    from verify.service import Verified, VerifyContext

MAX_TOKEN_CHARS = 16 * 1024


@dataclass(frozen=True)
class TokenCheck:
    """A VerifyIdToken request in domain terms."""

    token: str
    kind: TokenKind | None = None
    expected_audience: str = ""
    expected_nonce: str = ""
    options: ReportOptions = field(default_factory=ReportOptions)


def _segment(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(text))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument.field("token", f"the JWT {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise InvalidArgument.field("token", f"the JWT {what} is not a JSON object")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def verify_token(ctx: VerifyContext, principal: Principal, check: TokenCheck) -> Verified:
    """VerifyIdToken (role ``verifier``)."""
    principal.require_role("verifier")
    token = check.token.strip()
    if not token:
        raise InvalidArgument.field("token", "required")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidArgument.field("token", f"a JWT is ASCII, at most {MAX_TOKEN_CHARS} chars")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidArgument.field("token", "not a compact JWT (three dot-separated parts)")
    if check.kind is TokenKind.REFRESH_TOKEN:
        raise InvalidArgument.field("kind", "refresh tokens are opaque; introspect them instead")
    header = _segment(parts[0], "header")
    _segment(parts[1], "payload")  # malformed → INVALID_ARGUMENT; its claims prove nothing yet
    locale = check.options.locale
    now = ctx.now()
    provider = ctx.provider
    skew = provider.config.clock_skew
    alg = _text(header.get("alg"))
    kid = _text(header.get("kid"))
    kind = TokenKind.ACCESS_TOKEN if header.get("typ") == ACCESS_TOKEN_TYP else TokenKind.ID_TOKEN

    sig_reasons: list[Reason] = []
    claims: dict[str, Any] | None = None
    try:
        header, claims = provider.tokens.signed(token)
    except TokenRejected as rejected:
        sig_reasons.append(_signature_reason(rejected, alg, kid, locale))
    reasons: list[Reason] = []
    warnings: list[Reason] = []
    report_token = TokenReport(kind=kind, algorithm=alg, key_id=kid)
    if claims is not None:
        reasons, warnings, report_token = _check_claims(
            ctx, check, header, claims, kind, alg, kid, now, skew, locale
        )
    signature = SignatureReport(
        index=0,
        format=SignatureFormat.JWT,
        verdict=verdict_of(sig_reasons),
        reasons=tuple(sig_reasons),
        signature_valid=claims is not None,
        intact=claims is not None,
        signature_algorithm=alg,
    )
    report = build_report(
        evidence_kind=EvidenceKind.TOKEN,
        evidence=token.encode("ascii"),
        options=check.options,
        checked_at=now,
        signatures=[signature],
        token=report_token,
        reasons=reasons,
        warnings=warnings,
    )
    return ctx.complete(principal, "token", report, check.options)


def _signature_reason(rejected: TokenRejected, alg: str, kid: str, locale: str) -> Reason:
    """The reason for a fault of the token validator's signature stage."""
    if rejected.fault is TokenFault.ALGORITHM_REJECTED:
        return Reason(
            ReasonCode.TOKEN_ALGORITHM_REJECTED,
            tr(
                locale,
                f"不接受的算法 {alg or '(无)'}：只接受本身份提供者 JWKS 中密钥的算法"
                "（不接受 none 或 HS*）",
                f"algorithm {alg or '(none)'} is not accepted: only the algorithms of our "
                "JWKS keys (never none or HS*)",
            ),
        )
    if rejected.fault is TokenFault.UNKNOWN_KEY:
        return Reason(
            ReasonCode.TOKEN_UNKNOWN_KEY,
            tr(
                locale,
                f"密钥标识 {kid or '(无)'} 不在本身份提供者的 JWKS 中",
                f"key id {kid or '(none)'} is not in our JWKS",
            ),
        )
    if rejected.fault is TokenFault.ALGORITHM_MISMATCH:
        return Reason(
            ReasonCode.TOKEN_ALGORITHM_REJECTED,
            tr(
                locale,
                f"算法 {alg} 与密钥 {kid} 的算法 {rejected.key_alg} 不符",
                f"algorithm {alg} does not match key {kid}'s algorithm {rejected.key_alg}",
            ),
        )
    return Reason(
        ReasonCode.SIGNATURE_INVALID,
        tr(locale, "令牌签名无效", "the token's signature does not verify"),
    )


def _check_claims(
    ctx: VerifyContext,
    check: TokenCheck,
    header: dict[str, Any],
    claims: dict[str, Any],
    kind: TokenKind,
    alg: str,
    kid: str,
    now: datetime,
    skew: int,
    locale: str,
) -> tuple[list[Reason], list[Reason], TokenReport]:
    """The provider's validator checks the claims and tells the token's state; each finding
    becomes its reason, the claims the token report."""
    provider = ctx.provider
    checked = provider.tokens.check_claims(
        header,
        claims,
        now.timestamp(),
        clock_skew=skew,
        expected_access=None if check.kind is None else check.kind is TokenKind.ACCESS_TOKEN,
        expected_audience=check.expected_audience,
        expected_nonce=check.expected_nonce,
    )
    reasons: list[Reason] = []
    warnings: list[Reason] = []
    for finding in checked.findings:
        reason = _claim_reason(finding, checked, kind, check, provider.config.issuer, locale)
        (warnings if finding.is_warning else reasons).append(reason)

    state = provider.token_state(header, checked, GrantStateLookup(ctx.certificates.reader))
    if state.revoked:
        reasons.append(
            _reason(
                ReasonCode.TOKEN_REVOKED,
                locale,
                "令牌（或其授权、会话）已被撤销",
                "the token (or its grant or session) has been revoked",
            )
        )
    identity: IdentitySummary | None = None
    acting_for: IdentitySummary | None = None
    if state.identity_id:
        holder = ctx.certificates.identity(state.identity_id)
        if (
            holder is not None
            and holder.kind is IdentityKind.LEGAL_PERSON
            and state.acting_person_id
        ):
            acting_for, identity = holder, ctx.certificates.identity(state.acting_person_id)
        else:
            identity = holder
        for who in (identity, acting_for):
            if who is not None and who.status is not IdentityStatus.ACTIVE:
                reasons.append(
                    _reason(
                        ReasonCode.IDENTITY_NOT_ACTIVE,
                        locale,
                        f"令牌所代表的主体 {who.display_name} 状态为 {who.status.value}",
                        f"the identity {who.display_name} is {who.status.value}",
                    )
                )
    scope = claims.get("scope")
    report = TokenReport(
        kind=kind,
        algorithm=alg,
        key_id=kid,
        issuer=checked.issuer,
        subject=_text(claims.get("sub")),
        audience=checked.audience,
        client_id=str(claims.get("azp") or claims.get("client_id") or ""),
        issued_at=checked.issued_at,
        expires_at=checked.expires_at,
        not_before=checked.not_before,
        auth_time=numeric_date(claims.get("auth_time")),
        acr=_text(claims.get("acr")),
        amr=claim_strings(claims.get("amr")),
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        revoked=state.revoked,
        identity=identity,
        acting_for=acting_for,
    )
    return reasons, warnings, report


def _reason(code: ReasonCode, locale: str, zh: str, en: str) -> Reason:
    return Reason(code, tr(locale, zh, en), "token")


def _claim_reason(
    finding: ClaimFinding,
    checked: CheckedClaims,
    kind: TokenKind,
    check: TokenCheck,
    our_issuer: str,
    locale: str,
) -> Reason:
    """The report's reason (or warning) for one finding of the claims check."""
    fault = finding.fault
    if fault is ClaimFault.WRONG_KIND:
        return _reason(
            ReasonCode.FORMAT_ERROR,
            locale,
            f"令牌类型不符：这是{'访问令牌' if kind is TokenKind.ACCESS_TOKEN else 'ID 令牌'}",
            f"wrong kind of token: this is an {kind.value.replace('_', ' ')}",
        )
    if fault is ClaimFault.ISSUER_MISMATCH:
        issuer = checked.claims.get("iss")
        return _reason(
            ReasonCode.TOKEN_ISSUER_MISMATCH,
            locale,
            f"签发者 {issuer!r} 不是本身份提供者 {our_issuer}",
            f"issuer {issuer!r} is not our identity provider {our_issuer}",
        )
    if fault is ClaimFault.EXPIRED:
        expires = checked.expires_at
        return _reason(
            ReasonCode.TOKEN_EXPIRED,
            locale,
            f"令牌已于 {expires:%Y-%m-%d %H:%M:%S} UTC 过期" if expires else "令牌没有有效的 exp",
            f"the token expired at {expires:%Y-%m-%d %H:%M:%S} UTC"
            if expires
            else "the token has no valid exp",
        )
    if fault is ClaimFault.NOT_YET_VALID:
        return _reason(
            ReasonCode.TOKEN_NOT_YET_VALID,
            locale,
            f"令牌尚未生效（{finding.claim} 在将来）",
            f"the token is not valid yet ({finding.claim} lies in the future)",
        )
    if fault is ClaimFault.AUDIENCE_MISMATCH:
        audience = list(checked.audience)
        return _reason(
            ReasonCode.TOKEN_AUDIENCE_MISMATCH,
            locale,
            f"令牌的受众 {audience} 不包含 {check.expected_audience}",
            f"the token's audience {audience} does not include {check.expected_audience}",
        )
    if fault is ClaimFault.AUDIENCE_NOT_CHECKED:
        return _reason(
            ReasonCode.TOKEN_AUDIENCE_MISMATCH,
            locale,
            "未给出期望的受众，未检查受众",
            "no expected audience given: the audience was not checked",
        )
    return _reason(  # ClaimFault.NONCE_MISMATCH
        ReasonCode.TOKEN_AUDIENCE_MISMATCH,
        locale,
        "nonce 与期望值不符：令牌不是为本次请求签发的",
        "the nonce does not match: the token was not issued for this request",
    )
