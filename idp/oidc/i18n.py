"""Texts of the login, consent and logout pages in Chinese (default) and English."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "lang": "zh-CN",
        "title_login": "统一身份认证 — 登录",
        "title_consent": "授权确认",
        "title_acting": "选择经办人",
        "title_error": "无法继续",
        "title_logout": "退出登录",
        "title_logged_out": "已退出",
        "signing_in_to": "登录到",
        "password_heading": "账号密码登录",
        "login_name": "账号",
        "password": "密码",
        "sign_in": "登录",
        "cert_heading": "数字证书登录（一证通）",
        "cert_help": "用证书（USB Key 或云证书）对下面的挑战值签名，粘贴证书链和签名（Base64）。",
        "challenge": "挑战值",
        "certificate": "证书链（PEM）",
        "signature": "签名（Base64）",
        "cert_sign_in": "证书登录",
        "login_failed": "账号或密码错误，或尝试次数过多，请稍后再试。",
        "certificate_failed": "证书登录失败：证书无效、已吊销或签名不正确。",
        "acting_not_allowed": "所选人员无权代表该单位办理。",
        "step_up": "该应用要求更高的认证等级，请使用数字证书登录。",
        "consent_intro": "该应用请求访问您的以下信息：",
        "allow": "同意",
        "deny": "拒绝",
        "acting_intro": "请选择代表本单位办理业务的人员：",
        "representative": "法定代表人",
        "agent": "经办人",
        "continue": "继续",
        "logout_question": "确定要退出统一身份认证吗？",
        "logout": "退出",
        "logged_out": "您已退出登录。",
        "other_language": "English",
        "other_locale": "en",
        "scope_openid": "您的用户标识",
        "scope_profile": "姓名、出生日期、性别",
        "scope_email": "电子邮箱",
        "scope_phone": "手机号码",
        "scope_address": "地址（行政区划）",
        "scope_identity": "居民身份证号码",
        "scope_legal_person": "单位名称、统一社会信用代码、经办人",
        "scope_offline_access": "在您离线时保持访问",
    },
    "en": {
        "lang": "en",
        "title_login": "Unified identity — sign in",
        "title_consent": "Allow access",
        "title_acting": "Choose who is acting",
        "title_error": "Cannot continue",
        "title_logout": "Sign out",
        "title_logged_out": "Signed out",
        "signing_in_to": "Signing in to",
        "password_heading": "Sign in with a password",
        "login_name": "Account",
        "password": "Password",
        "sign_in": "Sign in",
        "cert_heading": "Sign in with your certificate (one-certificate)",
        "cert_help": "Sign the challenge below with your certificate (USB key or cloud "
        "certificate), then paste the certificate chain and the Base64 signature.",
        "challenge": "Challenge",
        "certificate": "Certificate chain (PEM)",
        "signature": "Signature (Base64)",
        "cert_sign_in": "Sign in with certificate",
        "login_failed": "Wrong account or password, or too many attempts. Try again later.",
        "certificate_failed": "Certificate sign-in failed: the certificate is not valid, is "
        "revoked, or the signature is wrong.",
        "acting_not_allowed": "That person may not act for this organisation.",
        "step_up": "This application needs a higher assurance level: sign in with your "
        "certificate.",
        "consent_intro": "This application asks to access:",
        "allow": "Allow",
        "deny": "Deny",
        "acting_intro": "Choose the person acting for the organisation:",
        "representative": "Legal representative",
        "agent": "Authorised agent",
        "continue": "Continue",
        "logout_question": "Do you want to sign out of the unified identity service?",
        "logout": "Sign out",
        "logged_out": "You are signed out.",
        "other_language": "中文",
        "other_locale": "zh-CN",
        "scope_openid": "your user identifier",
        "scope_profile": "name, birth date, gender",
        "scope_email": "email address",
        "scope_phone": "mobile number",
        "scope_address": "address (region)",
        "scope_identity": "resident ID number",
        "scope_legal_person": "organisation name, credit code and acting person",
        "scope_offline_access": "access while you are offline",
    },
}


def pick_locale(ui_locales: str, accept_language: str = "", override: str = "") -> str:
    """The page language: explicit choice, then ``ui_locales``, then Accept-Language; zh-CN."""
    for candidate in [override, *ui_locales.split(), *_accept(accept_language)]:
        lowered = candidate.lower()
        if lowered.startswith("en"):
            return "en"
        if lowered.startswith("zh"):
            return "zh-CN"
    return "zh-CN"


def _accept(header: str) -> list[str]:
    return [part.split(";")[0].strip() for part in header.split(",") if part.strip()]
