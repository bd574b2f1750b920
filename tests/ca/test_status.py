"""Status changes: the state machine, OCSP and CRLs (full and delta) reflecting every change at
once, verified with openssl. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl
from sqlalchemy import select

from ca.authority import CertificateAuthority
from ca.crl import build_crl, encode_entries
from ca.issuance import IssueRequest, SubjectSpec
from ca.models import CaCertificate
from govtrust.audit import AuditRecord, verify_chain
from govtrust.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from tests.ca.conftest import (
    OPERATOR,
    VERIFIER,
    make_csr,
    ocsp_query,
    openssl,
    pkilint,
    write_chain,
)
from tests.unchanged import Snapshot, unchanged


def _issue(authority: CertificateAuthority) -> CaCertificate:
    return authority.issue(
        OPERATOR, IssueRequest("citizen", SubjectSpec(identity="c-rep"), csr=make_csr())
    ).certificate


def _ocsp_status(authority: CertificateAuthority, row: CaCertificate) -> tuple[str, object]:
    response = ocsp_query(authority, row)
    single = response.basic_ocsp_response["tbs_response_data"]["responses"][0]
    status = single["cert_status"]
    reason = status.chosen["revocation_reason"].native if status.name == "revoked" else None
    return status.name, reason


def _even(serial: str) -> str:
    """openssl prints serials with an even number of hex digits."""
    return serial.zfill(len(serial) + len(serial) % 2)


def _same(authority: CertificateAuthority) -> AbstractContextManager[Snapshot]:
    """A refused status change stores nothing: no row, no audit record, no key."""
    return unchanged(authority.ctx.db, authority.ctx.keystore)


def test_state_machine(authority: CertificateAuthority) -> None:
    row = _issue(authority)
    assert _ocsp_status(authority, row) == ("good", None)
    with _same(authority), pytest.raises(FailedPrecondition, match="cannot resume a active"):
        authority.resume(OPERATOR, row.id)
    authority.suspend(OPERATOR, row.id, "lost")
    assert _ocsp_status(authority, row) == ("revoked", "certificate_hold")
    with _same(authority), pytest.raises(FailedPrecondition):
        authority.suspend(OPERATOR, row.id)
    authority.resume(OPERATOR, row.id)
    assert _ocsp_status(authority, row) == ("good", None)
    with _same(authority), pytest.raises(InvalidArgument, match="reason"):
        authority.revoke(OPERATOR, row.id, reason="certificateHold")
    with _same(authority), pytest.raises(InvalidArgument, match="invalidity_date"):
        authority.revoke(
            OPERATOR, row.id, reason=1, invalidity_date=datetime.now(UTC) + timedelta(days=1)
        )
    with _same(authority), pytest.raises(PermissionDenied):
        authority.revoke(VERIFIER, row.id, reason=1)
    revoked = authority.revoke(
        OPERATOR,
        row.id,
        reason="keyCompromise",
        invalidity_date=datetime.now(UTC) - timedelta(days=2),
        comment="stolen laptop",
    )
    assert revoked.status == "revoked" and revoked.revocation_reason == 1
    assert _ocsp_status(authority, row) == ("revoked", "key_compromise")
    for operation in (authority.suspend, authority.resume):
        with _same(authority), pytest.raises(FailedPrecondition):
            operation(OPERATOR, row.id)
    with _same(authority), pytest.raises(FailedPrecondition):
        authority.revoke(OPERATOR, row.id, reason=1)
    with authority.ctx.db.read() as session:
        actions = list(session.scalars(select(AuditRecord.action).order_by(AuditRecord.seq)))
        assert actions[-4:] == ["ca.issue", "ca.suspend", "ca.resume", "ca.revoke"]
        assert verify_chain(session).ok


def test_suspended_then_revoked(authority: CertificateAuthority) -> None:
    row = _issue(authority)
    authority.suspend(OPERATOR, row.id)
    authority.revoke(OPERATOR, row.id, reason="cessationOfOperation")
    assert _ocsp_status(authority, row) == ("revoked", "cessation_of_operation")


def test_crl_and_delta_reflect_changes_at_once(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    chain = write_chain(authority, tmp_path)
    first = authority.crl("citizen")
    assert first.entry_count == 0
    revoked, held, resumed = _issue(authority), _issue(authority), _issue(authority)
    authority.suspend(OPERATOR, resumed.id)
    full = authority.crl("citizen")
    assert full.crl_number > first.crl_number and full.entry_count == 1
    authority.revoke(
        OPERATOR,
        revoked.id,
        reason="affiliationChanged",
        invalidity_date=datetime.now(UTC) - timedelta(hours=1),
    )
    authority.suspend(OPERATOR, held.id)
    authority.resume(OPERATOR, resumed.id)
    full = authority.crl("citizen")
    path = tmp_path / "citizen.crl"
    path.write_bytes(full.der)
    out = openssl(
        "crl", "-inform", "DER", "-in", str(path), "-CAfile", str(chain.all), "-noout", "-text"
    )
    assert "verify OK" in out
    assert f"Serial Number: {_even(revoked.serial)}" in out
    assert f"Serial Number: {_even(held.serial)}" in out
    assert _even(resumed.serial) not in out
    assert "Affiliation Changed" in out and "Certificate Hold" in out and "Invalidity Date" in out
    assert (
        pkilint("lint_crl", "-t", "CRL", "-p", "PKIX", "--document-format", "DER", str(path)) == ""
    )
    # the same CRL is served until something changes
    assert authority.crl("citizen").crl_number == full.crl_number
    # the delta is based on the OLDEST still-valid full CRL (here the first, empty one) and
    # carries every change since: revocations, holds, and released holds as removeFromCRL
    delta = authority.crl("citizen", delta=True)
    assert delta.base_crl_number == first.crl_number and delta.crl_number > full.crl_number
    parsed = asn1_crl.CertificateList.load(delta.der)
    assert parsed.delta_crl_indicator_value.native == first.crl_number
    authority.resume(OPERATOR, held.id)
    delta = authority.crl("citizen", delta=True)
    parsed = asn1_crl.CertificateList.load(delta.der)
    reasons = {
        e["user_certificate"].native: e.crl_reason_value.native if e.crl_reason_value else None
        for e in parsed["tbs_cert_list"]["revoked_certificates"]
    }
    assert reasons[int(held.serial, 16)] == "remove_from_crl"
    assert reasons[int(resumed.serial, 16)] == "remove_from_crl"
    assert reasons[int(revoked.serial, 16)] == "affiliation_changed"
    dpath = tmp_path / "delta.crl"
    dpath.write_bytes(delta.der)
    assert "verify OK" in openssl(
        "crl", "-inform", "DER", "-in", str(dpath), "-CAfile", str(chain.all), "-noout"
    )
    # pkilint expects a delta CRL to reference its base in an IDP/freshest scope; PKIX profile
    assert (
        pkilint("lint_crl", "-t", "CRL", "-p", "PKIX", "--document-format", "DER", str(dpath)) == ""
    )


def test_a_revocation_timed_before_its_base_but_committed_after_is_in_the_delta(
    authority: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revocation takes its time before its transaction (which signs an OCSP response and
    waits for the audit chain), so it can be timed before a full CRL's thisUpdate yet commit
    after that CRL read its entries: in neither the full CRL nor, by time, any delta on it."""
    chain = write_chain(authority, tmp_path)
    late, early = _issue(authority), _issue(authority)
    authority.revoke(OPERATOR, early.id, reason="superseded")
    base = authority.crl("citizen")
    assert base.entry_count == 1
    # what the race leaves behind: the revocation committed now, timed before the base
    moment = base.this_update - timedelta(seconds=2)
    monkeypatch.setattr("ca.revocation.now", lambda: moment)
    authority.revoke(OPERATOR, late.id, reason="keyCompromise")
    monkeypatch.undo()
    delta = authority.crl("citizen", delta=True)
    assert delta.base_crl_number == base.crl_number
    path = tmp_path / "delta.crl"
    path.write_bytes(delta.der)
    out = openssl(
        "crl", "-inform", "DER", "-in", str(path), "-CAfile", str(chain.all), "-noout", "-text"
    )
    assert "verify OK" in out
    assert f"Serial Number: {_even(late.serial)}" in out  # its base lacks it
    assert _even(early.serial) not in out  # its base has it
    assert "Key Compromise" in out


def test_large_crl_encodes_in_one_pass(authority: CertificateAuthority, tmp_path: Path) -> None:
    ca = authority.hierarchy.ca("legal-person")
    moment = datetime.now(UTC).replace(microsecond=0)
    entries = [
        (0x8000_0000_0000_0000_0000_0000_0000_0000 + i, moment, (i % 3) or None, None)
        for i in range(20_000)
    ]
    der, count = build_crl(
        signer=ca.key,
        issuer_name=ca.subject,
        issuer_key_id=ca.key_id,
        entries=entries,
        crl_number=7,
        this_update=moment,
        next_update=moment + timedelta(days=1),
    )
    assert count == 20_000
    parsed = asn1_crl.CertificateList.load(der)
    assert len(parsed["tbs_cert_list"]["revoked_certificates"]) == 20_000
    assert encode_entries([])[1] == 0
    chain = write_chain(authority, tmp_path)
    path = tmp_path / "big.crl"
    path.write_bytes(der)
    assert "verify OK" in openssl(
        "crl", "-inform", "DER", "-in", str(path), "-CAfile", str(chain.all), "-noout"
    )


def test_scheduled_refresh_resigns_stale_responses(authority: CertificateAuthority) -> None:
    from ca.models import CaOcspResponse

    row = _issue(authority)
    with authority.ctx.db.transaction() as session:
        response = session.get(CaOcspResponse, row.id)
        assert response is not None
        old = response.der
        response.next_update = datetime.now(UTC) + timedelta(minutes=5)
    result = authority.refresh()
    assert result["ocsp_refreshed"] == 1 and result["crl:citizen"] >= 1
    with authority.ctx.db.read() as session:
        fresh = session.get(CaOcspResponse, row.id)
        assert fresh is not None and fresh.der != old
    assert _ocsp_status(authority, row) == ("good", None)
