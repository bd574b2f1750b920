"""Bulk licence import (issue 22 items 3-4): the CSV / JSON Lines reader, its results file, and
``LicenceService.issue_rows`` on a real platform (both backends): every row issued with its
sealed PDF or refused with its own reason, the rest issued, a second import issuing nothing."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from govtrust.audit import AuditRecord, chain_key, verify_chain
from govtrust.config import Settings
from govtrust.errors import InvalidArgument
from govtrust.platform import Platform
from govtrust.principal import SYSTEM, Principal
from govtrust.server.wiring import open_wired
from govtrust.v1 import license_pb2
from idp.types import IdentityRef
from license import bulk_issuance as bi
from license import catalogue
from license.bulk import ResultsFile, count_rows, read_rows
from license.bulk_issuance import RowOutcome, SourceRow
from license.checking import Verdict
from license.issuance import IssueRequest
from license.models import LicenceRow, LicenceSourceRow
from license.runtime import LicenceRuntime, runtime_for
from license.verification import LicenceVerifier
from tests.license.conftest import COMPANY, ISSUER, set_up_issuing_department
from tests.license.test_catalogue import GOOD_BL
from tests.license.test_production import Prod, prod
from tests.seal.conftest import REGISTRAR
from tests.unchanged import unchanged

SEALLESS = "11430000006122244L"  # a department that may issue the type but has no active seal
UNREGISTERED = "11100000000013338W"  # a valid USCC no one registered
__all__ = ["prod"]  # the fixture, shared with test_production
DEPT = Principal("service", "amr-system", frozenset({f"licence-issuer:{ISSUER}",
                                                     f"licence-issuer:{SEALLESS}"}))  # fmt: skip


def _row(key: str, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "source_key": key,
        "type_code": catalogue.BUSINESS_LICENCE_CODE,
        "issuer_code": ISSUER,
        "holder_code_type": "001",
        "holder_code": COMPANY,
        "valid_from": "2015-06-01",
        **GOOD_BL,
    }
    values.update(overrides)
    return values


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    names = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, names)
        writer.writeheader()
        writer.writerows(rows)
    return path


# --- the reader --------------------------------------------------------------------------------


def test_reader_reads_csv_and_refuses_bad_rows_each_with_its_reason(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "in.csv",
        [
            _row("A-1"),
            _row("A-2", valid_from="2015-13-01"),  # a bad date
            _row("A-3", holder_code=""),  # a missing required value
            _row("A-1", serial="x"),  # the key again
            _row("A-4", holder_code_type="002"),
            _row("A-5", issuer_code=""),  # falls back to --issuer
        ],
    )
    with path.open("a", encoding="utf-8") as handle:
        handle.write("A-6,too,few\n")
    assert count_rows(path) == 7
    rows = list(read_rows(path, issuer_code=ISSUER))
    assert [r.line for r in rows] == [2, 3, 4, 5, 6, 7, 8]
    good = rows[0].request
    assert good is not None and good.fields["KZ_MC"] == GOOD_BL["KZ_MC"]
    assert good.valid_from is not None and good.valid_from.isoformat() == "2015-06-01"
    reasons = [(r.refusal.reason, r.refusal.message) if r.refusal else None for r in rows]
    assert reasons[0] is None and reasons[5] is None
    assert rows[5].request is not None and rows[5].request.issuer_code == ISSUER
    assert reasons[1] == (bi.MALFORMED, "line 3: valid_from: must be a date YYYY-MM-DD")
    assert reasons[2] == (bi.MALFORMED, "line 4: holder_code: required")
    assert reasons[3] is not None and reasons[3][0] == bi.DUPLICATE and "A-1" in reasons[3][1]
    assert reasons[4] == (bi.MALFORMED, "line 6: holder_code_type: 001 (USCC) or 111 (resident ID)")
    assert reasons[6] == (bi.MALFORMED, "line 8: 3 cells, the header has 17")


def test_reader_reads_json_lines(tmp_path: Path) -> None:
    good = _row("J-1")
    nested = {k: v for k, v in _row("J-2").items() if not k.startswith("KZ_")}
    nested["fields"] = dict(GOOD_BL)
    lines = [
        json.dumps(good, ensure_ascii=False),
        "",
        json.dumps(nested, ensure_ascii=False),
        "{not json",
        "[1, 2]",
        json.dumps({**good, "source_key": "J-3", "colour": "red"}),
        json.dumps({**good, "source_key": "J\t4"}),
        json.dumps({**good, "source_key": "J-5", "holder_code": [7]}),
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = list(read_rows(path))
    assert [r.line for r in rows] == [1, 3, 4, 5, 6, 7, 8]
    assert rows[0].request is not None and rows[1].request is not None
    assert rows[1].request.fields == GOOD_BL
    refusals = [r.refusal for r in rows[2:]]
    assert all(r is not None and r.reason == bi.MALFORMED for r in refusals)
    messages = [r.message for r in refusals if r is not None]
    assert messages[0].startswith("line 4: not JSON")
    assert messages[1] == "line 5: not a JSON object"
    assert messages[2] == "line 6: colour: unknown column"
    assert messages[3] == "line 7: source_key: 1-128 printable characters, no surrounding spaces"
    assert messages[4] == "line 8: holder_code: must be text"


def test_reader_refuses_a_header_with_an_unknown_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "in.csv", [{**_row("H-1"), "colour": "red"}])
    with unchanged(None, None, tmp_path), pytest.raises(InvalidArgument) as caught:
        list(read_rows(path))
    assert caught.value.violations[0].description == "unknown column 'colour'"


def test_results_file_keeps_complete_lines_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    results = ResultsFile(path)
    results.write(2, RowOutcome("A", identifier="1.2.156.3005.2.x"))
    results.write(3, bi.refused("B", bi.HOLDER_NOT_FOUND, "no such holder"))
    results.close()
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"line": 4, "source_key": "C", "sta')  # cut off by kill -9
    again = ResultsFile(path)
    assert set(again.done) == {2, 3}
    assert again.done[3]["reason"] == bi.HOLDER_NOT_FOUND
    again.write(4, RowOutcome("C", identifier="1.2.156.3005.2.y", existing=True))
    again.close()
    lines = [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines()]
    assert [(x["line"], x["status"]) for x in lines] == [(2, "issued"), (3, "refused"),
                                                         (4, "existing")]  # fmt: skip


# --- issue_rows on a real platform -------------------------------------------------------------


@dataclass
class Bulk:
    platform: Platform
    runtime: LicenceRuntime

    def request(self, **overrides: object) -> IssueRequest:
        values: dict[str, object] = {
            "type_code": catalogue.BUSINESS_LICENCE_CODE,
            "issuer_code": ISSUER,
            "issuer_name": "测试市市场监督管理局",
            "holder_code_type": "001",
            "holder_code": COMPANY,
            "fields": GOOD_BL,
        }
        values.update(overrides)
        return IssueRequest(**values)  # type: ignore[arg-type]

    def counts(self) -> tuple[int, int, int]:
        with self.platform.db.read() as session:
            return (
                session.scalar(select(func.count()).select_from(LicenceRow)) or 0,
                session.scalar(select(func.count()).select_from(LicenceSourceRow)) or 0,
                session.scalar(
                    select(func.count())
                    .select_from(AuditRecord)
                    .where(AuditRecord.action == "licence.issue")
                )
                or 0,
            )


@pytest.fixture
def bulk(database_url: str, tmp_path: Path) -> Iterator[Bulk]:
    platform = open_wired(Settings(data_dir=tmp_path / "data", database_url=database_url))
    try:
        runtime = runtime_for(platform)
        parties = set_up_issuing_department(runtime)
        runtime.service.registry.register_legal_person(
            REGISTRAR, uscc=SEALLESS, name="无印章的局",
            legal_representative=IdentityRef(id=parties.director_id),
        )  # fmt: skip
        with platform.db.transaction() as session:
            catalogue.seed_catalogue(session, SYSTEM, [ISSUER, SEALLESS])
        yield Bulk(platform, runtime)
    finally:
        platform.close()


def test_issue_rows_issues_the_good_rows_and_refuses_each_bad_one(bulk: Bulk) -> None:
    service = bulk.runtime.service
    rows = [
        SourceRow("OK-1", bulk.request()),
        SourceRow("BAD-FIELD", bulk.request(fields={**GOOD_BL, "KZ_CLRQ": "yesterday"})),
        SourceRow("OK-2", bulk.request(serial="20240000000001")),
        SourceRow("NO-HOLDER", bulk.request(holder_code=UNREGISTERED)),
        SourceRow("NO-SEAL", bulk.request(issuer_code=SEALLESS, issuer_name="无印章的局")),
        SourceRow("OK-1", bulk.request(number="again")),  # the key twice in one call
        SourceRow("SAME-SERIAL", bulk.request(serial="20240000000001")),
        SourceRow("NO-TYPE", bulk.request(type_code=ISSUER + "999")),
        SourceRow(" spaced", bulk.request()),
    ]
    outcomes = service.issue_rows(DEPT, rows)
    by_key = {o.source_key: o for o in outcomes if o.source_key != "OK-1" or o.identifier}
    assert [o.status for o in outcomes] == [
        "issued", "refused", "issued", "refused", "refused", "refused", "refused", "refused",
        "refused",
    ]  # fmt: skip
    assert [o.reason for o in outcomes if not o.issued] == [
        bi.INVALID, bi.HOLDER_NOT_FOUND, bi.NO_ACTIVE_SEAL, bi.DUPLICATE, bi.IDENTIFIER_TAKEN,
        bi.UNKNOWN_TYPE, bi.MALFORMED,
    ]  # fmt: skip
    assert "KZ_CLRQ" in by_key["BAD-FIELD"].message
    assert "no active official seal" in by_key["NO-SEAL"].message
    assert bulk.counts() == (2, 2, 2)
    stored = service.stored(outcomes[0].identifier)
    assert stored.document_pdf is not None and stored.document_pdf.startswith(b"%PDF-")
    # The sealed PDF checks as any issued licence's does (PAdES B-T, chain to the CA roots).
    runtime = bulk.runtime
    verifier = LicenceVerifier(runtime.service, runtime.roots, runtime.trust_list)
    checked = verifier.check("document", stored.document_pdf).check
    assert checked.verdict is Verdict.VALID, checked.reasons
    assert checked.identifier == outcomes[0].identifier
    assert outcomes[2].identifier.split(".")[-3] == "20240000000001"
    # The chunk's audit records and seal uses were written together: the chain still verifies,
    # and the seal's history has one use per sealed PDF, in sequence.
    with bulk.platform.db.read() as session:
        assert verify_chain(session, chain_key(bulk.platform.db)).ok
    seal_id = bulk.runtime.seals.service.department_use(ISSUER, "licence").seal.id
    history, _ = bulk.runtime.seals.service.history(seal_id, include_uses=True)
    used = [e for e in history if e.action == "seal_pdf"]
    assert sorted(e.reason for e in used) == sorted(
        f"licence {o.identifier}" for o in outcomes if o.issued
    )
    assert [e.sequence for e in history] == list(range(1, len(history) + 1))

    # Imported again: the issued rows answer their licences, nothing new is written.
    with unchanged(bulk.platform.db):
        again = service.issue_rows(DEPT, [rows[0], rows[2]])
    assert [(o.identifier, o.existing) for o in again] == [
        (outcomes[0].identifier, True),
        (outcomes[2].identifier, True),
    ]
    # The same key with another body is refused, and changes nothing.
    with unchanged(bulk.platform.db):
        reused = service.issue_rows(DEPT, [SourceRow("OK-1", bulk.request(number="N-9"))])
    assert reused[0].reason == bi.SOURCE_KEY_REUSED and outcomes[0].identifier in reused[0].message


def test_issue_rows_of_only_bad_rows_changes_nothing(bulk: Bulk) -> None:
    service = bulk.runtime.service
    rows = [
        SourceRow("NO-HOLDER", bulk.request(holder_code=UNREGISTERED)),
        SourceRow("NO-SEAL", bulk.request(issuer_code=SEALLESS, issuer_name="无印章的局")),
        SourceRow("BAD", bulk.request(valid_until=None, holder_code_type="111")),
        SourceRow("KEYED", replace(bulk.request(), request_id="r-1")),
    ]
    with unchanged(bulk.platform.db):
        outcomes = service.issue_rows(DEPT, rows)
    assert [o.reason for o in outcomes] == [
        bi.HOLDER_NOT_FOUND, bi.NO_ACTIVE_SEAL, bi.INVALID, bi.INVALID,
    ]  # fmt: skip
    stranger = Principal("service", "other", frozenset({"licence-issuer:91350100M000100Y43"}))
    with unchanged(bulk.platform.db):
        denied = service.issue_rows(stranger, [SourceRow("X", bulk.request())])
    assert denied[0].reason == bi.NOT_AUTHORISED


# --- IssueLicenses over gRPC -------------------------------------------------------------------


def _bulk_message(key: str, **overrides: object) -> license_pb2.IssueLicensesRequest:
    values: dict[str, object] = {
        "type_code": catalogue.BUSINESS_LICENCE_CODE,
        "holder": license_pb2.LicenseHolder(
            code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY
        ),
        "fields": GOOD_BL,
        "valid_from": "2015-06-01",
    }
    values.update(overrides)
    return license_pb2.IssueLicensesRequest(
        source_key=key,
        license=license_pb2.IssueLicenseRequest(**values),  # type: ignore[arg-type]
    )


def _stream(prod: Prod, messages: list[license_pb2.IssueLicensesRequest]) -> list[Any]:
    responses = prod.call("IssueLicenses", iter(messages))
    assert isinstance(responses, Iterable)
    return list(responses)


def test_issue_licenses_streams_one_result_per_row(prod: Prod) -> None:
    messages = [
        _bulk_message("G-1"),
        _bulk_message("G-2", skip_document=True),
        _bulk_message("G-3", valid_from="2015-02-30"),
        _bulk_message("G-1"),
        _bulk_message(
            "G-4",
            holder=license_pb2.LicenseHolder(
                code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=UNREGISTERED
            ),
        ),
        _bulk_message("G-5", issuer_code="91350100M000100Y43"),
        _bulk_message(""),
    ]
    responses = _stream(prod, messages)
    by_index = {r.index: r for r in sorted(responses, key=lambda r: r.index)}
    assert sorted(by_index) == list(range(len(messages)))
    issued = license_pb2.BULK_ISSUE_STATUS_ISSUED
    refused = license_pb2.BULK_ISSUE_STATUS_REFUSED
    assert [(by_index[i].status, by_index[i].reason) for i in range(len(messages))] == [
        (issued, ""), (issued, ""), (refused, bi.MALFORMED), (refused, bi.DUPLICATE),
        (refused, bi.HOLDER_NOT_FOUND), (refused, bi.NOT_AUTHORISED), (refused, bi.MALFORMED),
    ]  # fmt: skip
    assert "valid_from" in by_index[2].message
    first = prod.runtime.service.stored(by_index[0].identifier)
    second = prod.runtime.service.stored(by_index[1].identifier)
    assert first.document_pdf is not None and second.document_pdf is None

    # The same stream again issues nothing: the issued rows answer their licences.
    with unchanged(prod.platform.db):
        again = _stream(prod, messages[:2])
    assert sorted((r.index, r.status, r.identifier) for r in again) == [
        (0, license_pb2.BULK_ISSUE_STATUS_EXISTING, by_index[0].identifier),
        (1, license_pb2.BULK_ISSUE_STATUS_EXISTING, by_index[1].identifier),
    ]
