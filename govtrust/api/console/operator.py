"""The console's operator pages (``/console/operator``, role ``ca-operator``; ``admin`` holds it):
the CA hierarchy with each CA's CRL and OCSP freshness, the key store's status, the audit
chain's status with "verify now", and the recent errors.

Every figure comes from a domain function that re-checks the role
(:meth:`ca.authority.CertificateAuthority.freshness`, :func:`hsm.status.keystore_status`
behind the same check, :func:`govtrust.audit.chain_status`, :func:`govtrust.audit.verify_step`)
and the errors from the server's own metrics (:func:`govtrust.observability.metrics.error_counts`)
and the audit chain's refusals. Nothing here changes state but "verify now", which records
its start in the audit chain (a CSRF-checked POST).

Verifying a long chain works without JavaScript: the POST redirects to a step page that
verifies :data:`VERIFY_STEP` records, shows a ``<progress>`` bar and refreshes itself (``<meta
http-equiv="refresh">``) to the next step until the head. The walk's position travels in the
URL, MACed under a key derived from the master key and bound to the console session, so it
cannot be forged or replayed into another session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from govtrust import audit
from govtrust.api.console.kit import Kit
from govtrust.errors import GovtrustError, PermissionDenied
from govtrust.observability.metrics import error_counts
from govtrust.rpc.offload import run_sync
from hsm.status import KeyStoreStatus, keystore_status
from verify.service import audit_token_check

if TYPE_CHECKING:
    from govtrust.api.console.routes import User

OPERATOR_ROLE = audit.OPERATOR_ROLE
VERIFY_STEP = 20_000  # records verified per step (about a second on the development machine)
STATE_PURPOSE = "govtrust/console/audit-verify/v1"
ERROR_ROWS = 20  # failed-call kinds shown (the server's faults first); the rest are counted
OPERATOR_TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "operator": "运行状态",
        "ca_hierarchy": "CA 层级与吊销信息新鲜度",
        "ca": "CA",
        "role": "类型",
        "algorithm": "算法",
        "valid_until": "证书有效期至",
        "full_crl": "完整 CRL",
        "delta_crl": "增量 CRL",
        "ocsp": "OCSP 预签响应",
        "this_update": "本次更新",
        "next_update": "下次更新",
        "overdue": "已过期",
        "fresh": "正常",
        "none": "无",
        "responses": "条",
        "role_root": "根 CA",
        "role_issuing": "签发 CA",
        "keystore": "密钥库",
        "backend": "后端",
        "reachable": "可访问",
        "unreachable": "不可访问",
        "on_device": "在设备内签名",
        "in_process": "在进程内签名",
        "key_state": "状态",
        "key_count": "数量",
        "state_active": "使用中",
        "state_destroyed": "已销毁",
        "state_escrowed": "已托管",
        "audit_chain": "审计链",
        "records": "记录数",
        "head_at": "最新记录时间",
        "checkpoint": "最新检查点",
        "checkpoint_none": "尚无检查点",
        "verify_now": "立即校验",
        "verify_note": "从第一条记录起重新计算每条记录的摘要与链接，并核对检查点的签名与时间戳。",
        "verifying": "正在校验审计链",
        "verified_of": "已校验 {done} / {total} 条",
        "verify_ok": "审计链完整：已校验 {done} 条记录。",
        "verify_broken": "审计链异常（{finding}）：第 {seq} 条记录，{reason}",
        "verify_bad_state": "校验进度无效或属于其他会话，请重新开始。",
        "recent_errors": "近期错误",
        "errors_metrics": "服务启动以来出错的调用",
        "errors_audit": "审计链中最近的拒绝与失败",
        "kind": "类别",
        "call": "调用",
        "code": "状态码",
        "count": "次数",
        "when": "时间",
        "actor": "操作者",
        "action": "操作",
        "target": "对象",
        "outcome": "结果",
        "no_errors": "无",
        "more_errors": "另有 {n} 种出错的调用（见 /metrics）",
    },
    "en": {
        "operator": "Operations",
        "ca_hierarchy": "CA hierarchy and revocation freshness",
        "ca": "CA",
        "role": "Role",
        "algorithm": "Algorithm",
        "valid_until": "Certificate valid until",
        "full_crl": "Full CRL",
        "delta_crl": "Delta CRL",
        "ocsp": "Pre-signed OCSP responses",
        "this_update": "thisUpdate",
        "next_update": "nextUpdate",
        "overdue": "overdue",
        "fresh": "fresh",
        "none": "none",
        "responses": "responses",
        "role_root": "root CA",
        "role_issuing": "issuing CA",
        "keystore": "Key store",
        "backend": "Backend",
        "reachable": "reachable",
        "unreachable": "unreachable",
        "on_device": "signs on the device",
        "in_process": "signs in process",
        "key_state": "State",
        "key_count": "Keys",
        "state_active": "active",
        "state_destroyed": "destroyed",
        "state_escrowed": "escrowed",
        "audit_chain": "Audit chain",
        "records": "Records",
        "head_at": "Newest record",
        "checkpoint": "Newest checkpoint",
        "checkpoint_none": "no checkpoint yet",
        "verify_now": "Verify now",
        "verify_note": "Recomputes every record's digest and link from the first record and "
        "checks the checkpoints' signatures and time-stamps.",
        "verifying": "Verifying the audit chain",
        "verified_of": "{done} of {total} records verified",
        "verify_ok": "The audit chain is intact: {done} records verified.",
        "verify_broken": "The audit chain is broken ({finding}): record {seq}, {reason}",
        "verify_bad_state": "The verification's progress is invalid or another session's; "
        "start again.",
        "recent_errors": "Recent errors",
        "errors_metrics": "Calls that failed since the server started",
        "errors_audit": "The audit chain's recent refusals and failures",
        "kind": "Kind",
        "call": "Call",
        "code": "Status",
        "count": "Count",
        "when": "When",
        "actor": "Actor",
        "action": "Action",
        "target": "Target",
        "outcome": "Outcome",
        "no_errors": "none",
        "more_errors": "and {n} more kinds of failed call (see /metrics)",
    },
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def install(api: APIRouter, kit: Kit) -> None:
    """Add the operator pages to the console's router."""
    platform = kit.platform
    key = platform.master_key.derive_key(STATE_PURPOSE)
    base = kit.base

    def ca_freshness(user: User) -> list[Any]:
        from ca.authority import authority_for

        return authority_for(platform).freshness(user.principal)

    def keystore(user: User) -> KeyStoreStatus:
        user.principal.require_role(OPERATOR_ROLE)
        return keystore_status(platform.keystore, platform.settings.hsm)

    token_check = audit_token_check(platform)

    def sign(user: User, state: dict[str, Any]) -> str:
        body = _b64(json.dumps(state, separators=(",", ":")).encode())
        mac = hmac.new(key, f"{user.session.csrf}.{body}".encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def unsign(user: User, token: str) -> dict[str, Any] | None:
        body, _, mac = token.partition(".")
        expected = hmac.new(key, f"{user.session.csrf}.{body}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(mac), expected):
                return None
            value = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        return value if isinstance(value, dict) else None

    async def operator_user(request: Request) -> User | Response:
        user = await kit.logged_in(request)
        if isinstance(user, Response):
            return user
        if not user.principal.has_role(OPERATOR_ROLE):
            return kit.refused(
                request, user, PermissionDenied(f"{user.principal.actor} is not an operator")
            )
        return user

    @api.get(base + "/operator")
    async def operator_page(request: Request) -> Response:
        user = await operator_user(request)
        if isinstance(user, Response):
            return user

        def load() -> tuple[list[Any], KeyStoreStatus, audit.ChainStatus]:
            return (
                ca_freshness(user),
                keystore(user),
                audit.chain_status(platform.db, user.principal),
            )

        try:
            cas, store, chain = await run_sync(load)
        except GovtrustError as exc:
            return kit.refused(request, user, exc)
        lang = kit.lang(request)
        errors = error_counts()
        return kit.page(
            request,
            "operator.html",
            user,
            title=OPERATOR_TEXTS[lang]["operator"],
            o=OPERATOR_TEXTS[lang],
            cas=cas,
            store=store,
            chain=chain,
            errors=errors[:ERROR_ROWS],
            more_errors=max(0, len(errors) - ERROR_ROWS),
        )

    @api.post(base + "/operator/audit/verify")
    async def verify_start(request: Request) -> Response:
        got = await kit.posted(request)
        if isinstance(got, Response):
            return got
        user, _form = got
        if not user.principal.has_role(OPERATOR_ROLE):
            return kit.refused(
                request, user, PermissionDenied(f"{user.principal.actor} is not an operator")
            )
        try:
            head = await run_sync(audit.start_verification, platform.db, user.principal)
        except GovtrustError as exc:
            return kit.refused(request, user, exc)
        state = sign(user, {"total": head, **asdict(audit.ChainPosition())})
        lang = kit.lang(request)
        return RedirectResponse(
            f"{base}/operator/audit/verify?state={state}&lang={lang}", status_code=303
        )

    @api.get(base + "/operator/audit/verify")
    async def verify_progress(request: Request) -> Response:
        user = await operator_user(request)
        if isinstance(user, Response):
            return user
        lang = kit.lang(request)
        o = OPERATOR_TEXTS[lang]
        state = unsign(user, request.query_params.get("state", ""))
        try:
            total = int(state["total"]) if state else 0
            position = (
                audit.ChainPosition(
                    int(state["next_seq"]),
                    str(state["prev_hash"]),
                    int(state["legacy"]),
                    bool(state["keyed_seen"]),
                )
                if state
                else None
            )
        except (KeyError, TypeError, ValueError):
            position = None
        if position is None:
            return kit.page(
                request,
                "operator_verify.html",
                user,
                title=o["verifying"],
                o=o,
                status=400,
                problem=o["verify_bad_state"],
                done=0,
                total=0,
            )

        def step() -> audit.ChainReport:
            return audit.verify_step(
                platform.db,
                user.principal,
                position,
                VERIFY_STEP,
                public_keys=platform.keystore.public_key,
                tokens=token_check,
            )

        try:
            report = await run_sync(step)
        except GovtrustError as exc:
            return kit.refused(request, user, exc)
        refresh = ""
        if report.resume is not None:
            nxt = sign(user, {"total": total, **asdict(report.resume)})
            refresh = f"0;url={base}/operator/audit/verify?state={nxt}&lang={lang}"
        shown = max(total, report.records)
        return kit.page(
            request,
            "operator_verify.html",
            user,
            title=o["verifying"],
            o=o,
            refresh=refresh,
            report=report,
            done=report.records,
            total=shown,
            percent=int(100 * report.records / shown) if shown else 100,
            problem="",
        )
