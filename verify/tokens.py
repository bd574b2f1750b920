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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from hsm.jws import b64url_decode
from idp.oidc.errors import InvalidToken
from idp.oidc.grant_state import GrantStateLookup
from idp.oidc.tokens import ACCESS_TOKEN_TYP, TokenFault, TokenRejected
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


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


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
        _, claims = provider.tokens.signed(token)
    except TokenRejected as rejected:
        sig_reasons.append(_signature_reason(rejected, alg, kid, locale))
    reasons: list[Reason] = []
    warnings: list[Reason] = []
    report_token = TokenReport(kind=kind, algorithm=alg, key_id=kid)
    if claims is not None:
        reasons, warnings, report_token = _check_claims(
            ctx, check, token, claims, kind, alg, kid, now, skew, locale
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
    token: str,
    claims: dict[str, Any],
    kind: TokenKind,
    alg: str,
    kid: str,
    now: datetime,
    skew: int,
    locale: str,
) -> tuple[list[Reason], list[Reason], TokenReport]:
    provider = ctx.provider
    reasons: list[Reason] = []
    warnings: list[Reason] = []

    def fail(code: ReasonCode, zh: str, en: str) -> None:
        reasons.append(Reason(code, tr(locale, zh, en), "token"))

    if check.kind is not None and check.kind is not kind:
        fail(
            ReasonCode.FORMAT_ERROR,
            f"令牌类型不符：这是{'访问令牌' if kind is TokenKind.ACCESS_TOKEN else 'ID 令牌'}",
            f"wrong kind of token: this is an {kind.value.replace('_', ' ')}",
        )
    issuer = claims.get("iss")
    if issuer != provider.config.issuer:
        fail(
            ReasonCode.TOKEN_ISSUER_MISMATCH,
            f"签发者 {issuer!r} 不是本身份提供者 {provider.config.issuer}",
            f"issuer {issuer!r} is not our identity provider {provider.config.issuer}",
        )
    expires = _time(claims.get("exp"))
    issued = _time(claims.get("iat"))
    not_before = _time(claims.get("nbf"))
    moment = now.timestamp()
    if expires is None or expires.timestamp() + skew <= moment:
        fail(
            ReasonCode.TOKEN_EXPIRED,
            f"令牌已于 {expires:%Y-%m-%d %H:%M:%S} UTC 过期" if expires else "令牌没有有效的 exp",
            f"the token expired at {expires:%Y-%m-%d %H:%M:%S} UTC"
            if expires
            else "the token has no valid exp",
        )
    for label, value in (("nbf", not_before), ("iat", issued)):
        if value is not None and value.timestamp() - skew > moment:
            fail(
                ReasonCode.TOKEN_NOT_YET_VALID,
                f"令牌尚未生效（{label} 在将来）",
                f"the token is not valid yet ({label} lies in the future)",
            )
    audience = _strings(claims.get("aud"))
    if check.expected_audience:
        if check.expected_audience not in audience:
            fail(
                ReasonCode.TOKEN_AUDIENCE_MISMATCH,
                f"令牌的受众 {list(audience)} 不包含 {check.expected_audience}",
                f"the token's audience {list(audience)} does not include {check.expected_audience}",
            )
    else:
        warnings.append(
            Reason(
                ReasonCode.TOKEN_AUDIENCE_MISMATCH,
                tr(
                    locale,
                    "未给出期望的受众，未检查受众",
                    "no expected audience given: the audience was not checked",
                ),
                "token",
            )
        )
    if check.expected_nonce and claims.get("nonce") != check.expected_nonce:
        fail(
            ReasonCode.TOKEN_AUDIENCE_MISMATCH,
            "nonce 与期望值不符：令牌不是为本次请求签发的",
            "the nonce does not match: the token was not issued for this request",
        )

    revoked, identity_id, acting_id = _revocation(ctx, token, claims, kind, audience)
    if revoked:
        fail(
            ReasonCode.TOKEN_REVOKED,
            "令牌（或其授权、会话）已被撤销",
            "the token (or its grant or session) has been revoked",
        )
    identity: IdentitySummary | None = None
    acting_for: IdentitySummary | None = None
    if identity_id:
        holder = ctx.certificates.identity(identity_id)
        if holder is not None and holder.kind is IdentityKind.LEGAL_PERSON and acting_id:
            acting_for, identity = holder, ctx.certificates.identity(acting_id)
        else:
            identity = holder
        for who in (identity, acting_for):
            if who is not None and who.status is not IdentityStatus.ACTIVE:
                fail(
                    ReasonCode.IDENTITY_NOT_ACTIVE,
                    f"令牌所代表的主体 {who.display_name} 状态为 {who.status.value}",
                    f"the identity {who.display_name} is {who.status.value}",
                )
    scope = claims.get("scope")
    report = TokenReport(
        kind=kind,
        algorithm=alg,
        key_id=kid,
        issuer=issuer if isinstance(issuer, str) else "",
        subject=_text(claims.get("sub")),
        audience=audience,
        client_id=str(claims.get("azp") or claims.get("client_id") or ""),
        issued_at=issued,
        expires_at=expires,
        not_before=not_before,
        auth_time=_time(claims.get("auth_time")),
        acr=_text(claims.get("acr")),
        amr=_strings(claims.get("amr")),
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        revoked=revoked,
        identity=identity,
        acting_for=acting_for,
    )
    return reasons, warnings, report


def _revocation(
    ctx: VerifyContext,
    token: str,
    claims: dict[str, Any],
    kind: TokenKind,
    audience: tuple[str, ...],
) -> tuple[bool, str | None, str | None]:
    """(revoked, identity id, acting person id) from the provider's token store."""

    grants = GrantStateLookup(ctx.certificates.reader)
    if kind is TokenKind.ACCESS_TOKEN:
        revoked = False
        try:
            ctx.provider.validate_access_token(token)
        except InvalidToken as exc:
            revoked = str(exc) == "revoked"
        jti = claims.get("jti")
        grant_id = jti.split(".", 1)[0] if isinstance(jti, str) and "." in jti else None
        if grant_id is None:
            return revoked, None, None  # a client_credentials token: no person behind it
        grant = grants.by_id(grant_id)
        if grant is None:
            return True, None, None
        return revoked or grant.revoked, grant.identity_id, grant.acting_person_id
    sid = claims.get("sid")
    client = claims.get("azp") or (audience[0] if audience else "")
    if not isinstance(sid, str) or not isinstance(client, str):
        return False, None, None
    grant = grants.by_session(sid, client)
    if grant is None:
        return False, None, None
    return grant.revoked, grant.identity_id, grant.acting_person_id
