"""The console over HTTP (TestClient): the login through the provider, the whole seal
lifecycle through the forms, and the security checks (roles re-checked on the server, CSRF,
escaping, timeouts, log-out ending the SSO session)."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from govtrust.errors import Unauthenticated
from seal.runtime import runtime_for
from seal.types import SealStatus
from tests.console.conftest import ConsoleEnv, login, make_env
from tests.unchanged import unchanged


def client(env: ConsoleEnv) -> TestClient:
    return TestClient(env.app(), base_url=env.base, follow_redirects=False)


def apply(http: TestClient, csrf: str, name: str = "合同专用章") -> str:
    response = http.post(
        "/console/apply",
        data={
            "csrf": csrf,
            "kind": "contract",
            "name": name,
            "key_algorithm": "ec-p256",
            "step": "apply",
        },
    )
    assert response.status_code == 303, response.text
    match = re.match(r"/console/seals/([^?]+)\?done=apply", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def act(http: TestClient, csrf: str, seal_id: str, op: str, **fields: str) -> httpx.Response:
    response: httpx.Response = http.post(
        f"/console/seals/{seal_id}/act/{op}", data={"csrf": csrf, **fields}
    )
    return response


def nothing_changes(env: ConsoleEnv) -> AbstractContextManager[object]:
    """No row, key or file changes (the session's idle clock may move: it is a request)."""
    return unchanged(env.platform.db, env.platform.keystore, allow=["oidc_rp_sessions"])


def status(env: ConsoleEnv, seal_id: str) -> SealStatus:
    return runtime_for(env.platform).service.get(seal_id).status


def test_lifecycle_through_the_forms_and_the_queues(console_env: ConsoleEnv) -> None:
    env = console_env
    with client(env) as company:
        csrf = login(company, "company")
        seal_id = apply(company, csrf)
        page = company.get(f"/console/seals/{seal_id}")
        assert 'data-status="applied"' in page.text and "合同专用章" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert "<script" not in page.text
    with client(env) as reviewer:
        csrf = login(reviewer, "reviewer")
        queue = reviewer.get("/console/queue/review")
        assert seal_id in queue.text and 'id="bulk-approve"' in queue.text
        done = act(reviewer, csrf, seal_id, "approve", reason="材料齐全")
        assert done.status_code == 303
    assert status(env, seal_id) is SealStatus.APPROVED
    with client(env) as maker:
        csrf = login(maker, "maker")
        assert seal_id in maker.get("/console/queue/make").text
        preview = maker.get(f"/console/seals/{seal_id}/make")
        assert preview.status_code == 200 and "data:image/svg+xml;base64," in preview.text
        assert act(maker, csrf, seal_id, "make").status_code == 303
    assert status(env, seal_id) is SealStatus.MADE
    with client(env) as filing:
        csrf = login(filing, "filing")
        assert act(filing, csrf, seal_id, "file", filing_number="BA-2026-001").status_code == 303
        assert act(filing, csrf, seal_id, "issue").status_code == 303
        page = filing.get(f"/console/seals/{seal_id}")
        assert 'data-status="active"' in page.text and "BA-2026-001" in page.text
        assert 'class="certificate"' in page.text
    assert status(env, seal_id) is SealStatus.ACTIVE


def test_a_reviewer_sees_no_maker_action_and_a_forged_make_is_403(console_env: ConsoleEnv) -> None:
    env = console_env
    with client(env) as company:
        seal_id = apply(company, login(company, "company"))
    with client(env) as reviewer:
        csrf = login(reviewer, "reviewer")
        assert act(reviewer, csrf, seal_id, "approve").status_code == 303
        page = reviewer.get(f"/console/seals/{seal_id}")
        assert 'id="op-make"' not in page.text and "/make" not in page.text
        assert reviewer.get("/console/queue/make").status_code == 403
        with nothing_changes(env):
            forged = act(reviewer, csrf, seal_id, "make")
            assert forged.status_code == 403
            assert reviewer.get(f"/console/seals/{seal_id}/make").status_code == 403
    assert status(env, seal_id) is SealStatus.APPROVED


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(console_env: ConsoleEnv) -> None:
    env = console_env
    with client(env) as company:
        seal_id = apply(company, login(company, "company"))
    with client(env) as reviewer:
        login(reviewer, "reviewer")
        with nothing_changes(env):
            assert act(reviewer, "", seal_id, "approve").status_code == 403
            assert act(reviewer, "x" * 43, seal_id, "approve").status_code == 403
            missing = reviewer.post(f"/console/seals/{seal_id}/act/approve", data={"reason": "r"})
            assert missing.status_code == 403
    assert status(env, seal_id) is SealStatus.APPLIED


def test_names_with_markup_and_quotes_are_shown_escaped(console_env: ConsoleEnv) -> None:
    env = console_env
    name = "<script>x</script>\"'&章"
    with client(env) as company:
        csrf = login(company, "company")
        seal_id = apply(company, csrf, name=name)
        page = company.get(f"/console/seals/{seal_id}").text
        assert "<script>" not in page
        assert "&lt;script&gt;x&lt;/script&gt;&#34;&#39;&amp;章" in page
        listing = company.get("/console/seals").text
        assert "<script>" not in listing and "&lt;script&gt;" in listing


def test_a_session_past_its_idle_timeout_must_log_in_again(tmp_path: Path) -> None:
    env = make_env(tmp_path, console_idle_seconds=60)
    try:
        with client(env) as company:
            login(company, "company")
            assert company.get("/console/seals").status_code == 200
            cookie = company.cookies.get("gt_console", path="/console")
            provider_clock(env, timedelta(seconds=61))
            again = company.get("/console/seals")
            assert again.status_code == 401 and 'id="login"' in again.text
            # ended, not just hidden: the same cookie stays refused, and refusing it again
            # changes nothing
            provider_clock(env, timedelta(seconds=0))
            company.cookies.set("gt_console", cookie, path="/console")
            with unchanged(env.platform.db, env.platform.keystore):
                assert company.get("/console/seals").status_code == 401
    finally:
        env.platform.close()


def test_activity_keeps_a_session_past_its_idle_timeout_alive(tmp_path: Path) -> None:
    """Each request restarts the idle clock (written at most every 30 s): 120 s of use with
    a 60 s idle timeout, a request every 40 s."""
    env = make_env(tmp_path, console_idle_seconds=60)
    try:
        with client(env) as company:
            login(company, "company")
            for ahead in (40, 80, 120):
                provider_clock(env, timedelta(seconds=ahead))
                assert company.get("/console/seals").status_code == 200, ahead
            cookie = company.cookies.get("gt_console", path="/console")
            provider_clock(env, timedelta(seconds=181))
            assert company.get("/console/seals").status_code == 401
            company.cookies.set("gt_console", cookie, path="/console")
            with unchanged(env.platform.db, env.platform.keystore):  # ended: nothing more
                assert company.get("/console/seals").status_code == 401
    finally:
        env.platform.close()


def provider_clock(env: ConsoleEnv, ahead: timedelta) -> None:
    from datetime import UTC, datetime

    from idp.oidc.factory import provider_for

    provider = provider_for(env.platform)
    provider.now = lambda: datetime.now(UTC) + ahead


def test_log_out_ends_the_console_and_the_sso_session(console_env: ConsoleEnv) -> None:
    env = console_env
    with client(env) as company:
        csrf = login(company, "company")
        out = company.post("/console/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"].startswith("/oidc/end_session?")
        ended = company.get(out.headers["location"])
        assert ended.status_code in (302, 303), ended.text
        assert ended.headers["location"].startswith(f"{env.base}/console/")
        assert company.get("/console/seals").status_code == 303  # to the login
        # the SSO session is over too: logging in again shows the provider's login page
        start = company.get("/console/login")
        page = company.get(start.headers["location"], follow_redirects=True)
        assert 'name="login_name"' in page.text


def test_bulk_review_reports_each_seal(console_env: ConsoleEnv) -> None:
    env = console_env
    with client(env) as company:
        csrf = login(company, "company")
        first = apply(company, csrf, "合同专用章")
        second = (
            company.post(
                "/console/apply",
                data={
                    "csrf": csrf,
                    "kind": "finance",
                    "name": "财务专用章",
                    "step": "apply",
                    "key_algorithm": "ec-p256",
                },
            )
            .headers["location"]
            .split("/")[3]
            .split("?")[0]
        )
    with client(env) as reviewer:
        csrf = login(reviewer, "reviewer")
        assert act(reviewer, csrf, second, "approve").status_code == 303
        result = reviewer.post(
            "/console/queue/review/bulk",
            data={"csrf": csrf, "decision": "approve", "seal_id": [first, second]},
        )
        assert result.status_code == 200
        assert f'data-seal="{first}" data-outcome="ok"' in result.text
        assert f'data-seal="{second}" data-outcome="failed"' in result.text
    assert status(env, first) is SealStatus.APPROVED


def test_cookies_are_http_only_same_site_and_secure_over_https(tmp_path: Path) -> None:
    env = make_env(tmp_path, public_base_url="https://console.example.gov.cn")
    try:
        http = TestClient(
            env.app(),
            base_url="https://console.example.gov.cn",
            follow_redirects=False,
        )
        with http:
            started = http.get("/console/login")
            login_cookie = started.headers["set-cookie"].lower()
            assert "httponly" in login_cookie and "samesite=lax" in login_cookie
            assert "secure" in login_cookie and "path=/console" in login_cookie
            assert "code_challenge_method=S256" in started.headers["location"]
            assert "client_id=govtrust-console" in started.headers["location"]
    finally:
        env.platform.close()


def test_english_by_choice_remembered_in_a_cookie(console_env: ConsoleEnv) -> None:
    with client(console_env) as http:
        login(http, "reviewer")
        assert "待审核" in http.get("/console/queue/review").text
        english = http.get("/console/queue/review?lang=en")
        assert "To review" in english.text and '<html lang="en">' in english.text
        assert "To review" in http.get("/console/queue/review").text
        assert "待审核" in http.get("/console/queue/review?lang=zh-CN").text


def test_log_out_everywhere_ends_every_session_and_revokes_tokens(console_env: ConsoleEnv) -> None:
    from idp.oidc.factory import provider_for
    from tests.console.conftest import citizen_token

    env = console_env
    token = citizen_token(env, "agent")  # a portal's token of the same person
    provider = provider_for(env.platform)
    assert provider.principal_for_token(token).citizen_id == env.agent_id
    with client(env) as first, client(env) as second:
        login(first, "agent")
        csrf = login(second, "agent")
        listed = second.get("/console/sessions")
        assert listed.status_code == 200 and listed.text.count('class="login"') == 3
        out = second.post("/console/sessions/logout-everywhere", data={"csrf": csrf})
        assert out.status_code == 200
        with unchanged(env.platform.db):  # an ended session reads nothing and writes nothing
            assert first.get("/console/sessions").status_code == 401
            assert second.get("/console/sessions").status_code == 303
            with pytest.raises(Unauthenticated):
                provider.principal_for_token(token)


def test_a_role_change_or_an_inactive_identity_shows_in_the_next_request(
    console_env: ConsoleEnv,
) -> None:
    """Roles and the identity's status are read with the session on every request: nothing
    is remembered between requests."""
    from sqlalchemy import update

    from idp.models import IdentityRow, StaffRow

    env = console_env
    reviewer_id = env.staff_ids["reviewer"]
    with client(env) as reviewer:
        login(reviewer, "reviewer")
        page = reviewer.get("/console/queue/review")
        assert page.status_code == 200
        assert '<span id="user">reviewer-员工</span>' in page.text
        assert '<span id="roles">seal-reviewer</span>' in page.text
        with env.platform.db.transaction() as session:
            session.execute(
                update(StaffRow).where(StaffRow.id == reviewer_id).values(roles="seal-maker")
            )
        with nothing_changes(env):
            assert reviewer.get("/console/queue/review").status_code == 403
        made = reviewer.get("/console/queue/make")
        assert made.status_code == 200 and '<span id="roles">seal-maker</span>' in made.text
        # the identity no longer active (its grant untouched here): the session ends
        cookie = reviewer.cookies.get("gt_console", path="/console")
        with env.platform.db.transaction() as session:
            session.execute(
                update(IdentityRow).where(IdentityRow.id == reviewer_id).values(status="suspended")
            )
        again = reviewer.get("/console/queue/make")
        assert again.status_code == 401 and 'id="login"' in again.text
        with env.platform.db.transaction() as session:
            session.execute(
                update(IdentityRow).where(IdentityRow.id == reviewer_id).values(status="active")
            )
        # ended, not just refused: reinstating the identity does not bring the session back
        reviewer.cookies.set("gt_console", cookie, path="/console")
        with unchanged(env.platform.db, env.platform.keystore):
            assert reviewer.get("/console/queue/make").status_code == 401


def test_the_header_names_the_legal_person_and_the_person_acting(
    console_env: ConsoleEnv,
) -> None:
    """A grant for a legal person with a person acting: the header shows both names, read
    with the session (the grant is turned into one here, as a legal-person login makes it)."""
    from sqlalchemy import update

    from idp.oidc.models import OidcGrantRow
    from tests.console.conftest import COMPANY

    env = console_env
    with client(env) as company:
        login(company, "company")
        page = company.get("/console/seals")
        assert page.status_code == 200 and '<span id="user">张三</span>' in page.text
        with env.platform.db.transaction() as session:
            session.execute(
                update(OidcGrantRow)
                .where(OidcGrantRow.identity_id == env.rep_id, OidcGrantRow.revoked_at.is_(None))
                .values(identity_id=env.company_id, acting_person_id=env.rep_id)
            )
        page = company.get("/console/seals")
        assert page.status_code == 200
        assert f'<span id="user">{COMPANY}（张三）</span>' in page.text
