"""The console's operator pages over HTTP (TestClient): the CA hierarchy with CRL and OCSP
freshness (overdue marked), the key store, the audit chain with "verify now" stepping through a
long chain by meta refresh, the recent errors; refused (403, nothing changed) for staff
without the operator role and without a CSRF token."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from ca.authority import authority_for
from govtrust import audit
from govtrust.api.console import operator
from govtrust.api.console.operator import ERROR_ROWS
from govtrust.observability.metrics import SERVER_FAULT_CODES, get_metrics
from tests.console.conftest import PASSWORD, REGISTRAR, ConsoleEnv, login
from tests.unchanged import unchanged


def client(env: ConsoleEnv) -> TestClient:
    return TestClient(env.app(), base_url=env.base, follow_redirects=False)


def add_operator(env: ConsoleEnv, login_name: str = "operator") -> None:
    """A staff member holding ``ca-operator`` with a password."""
    from idp.oidc.factory import provider_for
    from idp.runtime import identity_registry_for

    staff = identity_registry_for(env.platform).register_staff(
        REGISTRAR,
        name="运维-员工",
        department_code="350100-SCJ",
        department_name="福州市市场监督管理局",
        employee_number="E090",
        roles=["ca-operator"],
    )
    provider_for(env.platform).passwords.set_password(
        REGISTRAR, identity_id=staff.id, login_name=login_name, password=PASSWORD
    )


def publish_crls(env: ConsoleEnv) -> list[str]:
    authority = authority_for(env.platform)
    names = authority.hierarchy.ca_names()
    for name in names:
        authority.crl(name)
    return names


def refresh_of(html: str) -> str | None:
    match = re.search(r'<meta http-equiv="refresh" content="0;url=([^"]+)">', html)
    return unescape(match.group(1)) if match else None


def test_the_operator_page_shows_the_hierarchy_key_store_and_audit_chain(
    console_env: ConsoleEnv,
) -> None:
    env = console_env
    add_operator(env)
    names = publish_crls(env)
    with client(env) as http:
        login(http, "operator")
        assert http.get("/console/").headers["location"] == "/console/operator"  # home
        page = http.get("/console/operator")
        assert page.status_code == 200, page.text
        html = page.text
        assert "CA 层级与吊销信息新鲜度" in html and 'id="nav-operator"' in html
        for name in names:
            assert f'data-ca="{name}" data-overdue="no"' in html
        assert "overdue" not in re.sub(r'data-overdue="no"', "", html)
        assert 'id="keystore" data-reachable="yes"' in html
        keys = re.findall(
            r'data-state="active"><td>[^<]+</td><td>[^<]+</td><td class="count">(\d+)', html
        )
        assert keys and sum(int(k) for k in keys) == len(env.platform.keystore.list())
        with env.platform.db.read() as session:
            head = audit.head_seq(session)
        assert f'<dd id="audit-records">{head}</dd>' in html
        assert 'id="verify-now"' in html and 'name="csrf"' in html
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        english = http.get("/console/operator?lang=en").text
        assert "CA hierarchy and revocation freshness" in english and "Verify now" in english


def test_an_overdue_crl_or_ocsp_response_is_marked(
    console_env: ConsoleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ca import health

    env = console_env
    add_operator(env)
    names = publish_crls(env)
    later = datetime.now(UTC) + timedelta(days=3)  # past every CRL's nextUpdate
    monkeypatch.setattr(health, "ca_now", lambda: later)
    with client(env) as http:
        login(http, "operator")
        html = http.get("/console/operator").text
        for name in names:
            assert f'data-ca="{name}" data-overdue="yes"' in html
        assert 'class="state state-revoked overdue"' in html


def test_verify_now_steps_through_the_chain_by_meta_refresh(
    console_env: ConsoleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = console_env
    add_operator(env)
    monkeypatch.setattr(operator, "VERIFY_STEP", 7)
    with client(env) as http:
        csrf = login(http, "operator")
        with env.platform.db.read() as session:
            before = audit.head_seq(session)
        started = http.post("/console/operator/audit/verify", data={"csrf": csrf})
        assert started.status_code == 303
        with env.platform.db.read() as session:
            head = audit.head_seq(session)
            last = session.scalars(
                select(audit.AuditRecord).where(audit.AuditRecord.seq == head)
            ).one()
        assert head == before + 1 and last.action == "audit.verify"  # the start is recorded
        url: str | None = started.headers["location"]
        steps = 0
        page = ""
        while url is not None:
            response = http.get(url)
            assert response.status_code == 200, response.text
            page = response.text
            assert "<progress" in page and "<script" not in page
            url = refresh_of(page)
            steps += 1
        assert steps >= head // 7
        assert 'data-result="intact"' in page
        assert f"已校验 {head} / {head} 条" in page


def test_verify_now_reports_an_edited_record(console_env: ConsoleEnv) -> None:
    env = console_env
    add_operator(env)
    with client(env) as http:
        csrf = login(http, "operator")
        with env.platform.db.transaction() as session:
            session.execute(
                text("UPDATE audit_log SET details = :d WHERE seq = 2"), {"d": '{"x": 1}'}
            )
        started = http.post("/console/operator/audit/verify?lang=en", data={"csrf": csrf})
        page = http.get(started.headers["location"]).text
        assert 'data-result="rewritten"' in page or 'data-result="edited"' in page
        assert "record 2" in page and "msg bad" in page


def test_a_forged_or_another_sessions_progress_is_refused(console_env: ConsoleEnv) -> None:
    env = console_env
    add_operator(env)
    with client(env) as first, client(env) as second:
        csrf = login(first, "operator")
        login(second, "operator")
        location = first.post("/console/operator/audit/verify", data={"csrf": csrf}).headers[
            "location"
        ]
        state = re.search(r"state=([^&]+)", location)
        assert state
        body, _, mac = state.group(1).partition(".")
        with unchanged(env.platform.db, env.platform.keystore, allow=["oidc_rp_sessions"]):
            other = second.get(location)  # another session's state
            assert other.status_code == 400 and 'data-result="invalid"' in other.text
            forged = first.get(f"/console/operator/audit/verify?state={body}x.{mac}")
            assert forged.status_code == 400
            assert first.get("/console/operator/audit/verify").status_code == 400


def test_recent_errors_come_from_the_metrics_and_the_audit_chain(console_env: ConsoleEnv) -> None:
    env = console_env
    add_operator(env)
    # counted more often than any fault the process saw before (other tests in it): first
    for _ in range(100_000):
        get_metrics().observe_http("GET", "/console/broken-route", 503, 0.01)
    # more kinds than the table shows
    for n in range(ERROR_ROWS + 5):
        get_metrics().observe_rpc("test.Refusals", f"Refused{n}", "PERMISSION_DENIED", 0.001)
    with env.platform.db.transaction() as session:
        audit.append(
            session,
            actor="user:intruder",
            action="seal.make",
            target="seal:forged",
            outcome="denied",
        )
    with client(env) as http:
        login(http, "operator")
        html = http.get("/console/operator").text
        assert "GET /console/broken-route" in html and "503" in html
        assert "user:intruder" in html and "seal:forged" in html and "denied" in html
        # a bounded table: the first ERROR_ROWS kinds (the server's faults first), the rest counted
        table = html.split('id="error-counts"', 1)[1].split("</table>", 1)[0]
        assert table.count("<tr>") == ERROR_ROWS + 1  # the header row and ERROR_ROWS rows
        codes = re.findall(
            r"<tr><td>(grpc|http)</td><td><code>[^<]*</code></td><td>([^<]*)</td>", table
        )
        faults = [kind == "http" or code in SERVER_FAULT_CODES for kind, code in codes]
        assert len(codes) == ERROR_ROWS and faults[0] and "/console/broken-route" in table
        assert faults == sorted(faults, reverse=True)  # the server's faults, then the refusals
        assert 'id="more-error-counts"' in html


def test_staff_without_the_operator_role_are_refused_and_nothing_changes(
    console_env: ConsoleEnv,
) -> None:
    env = console_env
    add_operator(env)
    authority_for(env.platform)  # the hierarchy exists before the refusals
    with client(env) as reviewer, client(env) as operator_http:
        csrf = login(reviewer, "reviewer")
        operator_csrf = login(operator_http, "operator")
        assert 'id="nav-operator"' not in reviewer.get("/console/queue/review").text
        with unchanged(env.platform.db, env.platform.keystore, allow=["oidc_rp_sessions"]):
            assert reviewer.get("/console/operator").status_code == 403
            forged = reviewer.post("/console/operator/audit/verify", data={"csrf": csrf})
            assert forged.status_code == 403
            assert reviewer.get("/console/operator/audit/verify?state=x.y").status_code == 403
            # the operator without (or with another session's) CSRF token
            assert operator_http.post("/console/operator/audit/verify", data={}).status_code == 403
            assert (
                operator_http.post(
                    "/console/operator/audit/verify", data={"csrf": csrf}
                ).status_code
                == 403
            )
        assert operator_csrf != csrf
