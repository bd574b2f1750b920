"""Reading a bulk import file (CSV or JSON Lines) row by row, and its results file.

(Not :mod:`license.loader`, which writes already-signed rows for tests and benchmarks.)

**Input.** One licence per row; CSV with a header line, or JSON Lines (one object a line; a
``.jsonl``/``.ndjson`` name, or a first character ``{``). Columns / keys:

- ``source_key`` (required): the department's key of the row, unique per department — what
  makes the import idempotent (:mod:`license.bulk_issuance`);
- ``type_code``, ``holder_code_type`` (``001`` or ``111``), ``holder_code`` (required);
- ``issuer_code`` (else the command's ``--issuer``), ``holder_name``, ``valid_from``,
  ``valid_until`` (``YYYY-MM-DD``), ``number``, ``serial`` (optional);
- the type's fields: every ``KZ_*`` column, or in JSON Lines a ``fields`` object (or ``KZ_*``
  keys).

The reader streams: it holds one row at a time, plus the source keys seen so far (to refuse a
key that comes twice). A row it cannot read (bad JSON, a wrong number of CSV cells, a missing
required value, an unknown column, a bad date) or a repeated key is answered as a refusal
(:data:`~license.bulk_issuance.MALFORMED`, :data:`~license.bulk_issuance.DUPLICATE`) and the
reader goes on. A CSV header naming an unknown column refuses the whole file
(:class:`InvalidArgument`, nothing read).

**Results** (:class:`ResultsFile`): one JSON line per input row, ``{"line": N, "source_key": …,
"status": "issued"|"existing"|"refused", "identifier": …, "reason": …, "message": …}``, written
as each chunk completes. Opened again after a crash, it keeps its complete lines (a line cut off
by the crash is dropped) and :meth:`ResultsFile.done` names the rows not to send again; a row
issued but not yet written when the process died is answered ``existing`` on the next run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

from govtrust.errors import InvalidArgument
from license.bulk_issuance import DUPLICATE, MALFORMED, RowOutcome, check_source_key, refused
from license.issuance import IssueRequest

REQUIRED = ("source_key", "type_code", "holder_code_type", "holder_code")
OPTIONAL = ("issuer_code", "holder_name", "valid_from", "valid_until", "number", "serial")
FIELD_PREFIX = "KZ_"
MAX_LINE = 1 << 20  # a JSON line longer than 1 MiB is refused, not read whole


@dataclass(frozen=True)
class ReadRow:
    """One row as read: ``line`` (1-based, the header is line 1 of a CSV), and either its
    ``request`` or the ``refusal`` the reader gave it."""

    line: int
    source_key: str
    request: IssueRequest | None = None
    refusal: RowOutcome | None = None


def is_jsonl(path: Path) -> bool:
    """Whether ``path`` is JSON Lines (by its name, else by its first character)."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    with path.open("rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] == b"{"


def count_rows(path: Path) -> int:
    """The rows of ``path`` (for a progress bar; one streaming pass)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if is_jsonl(path):
            return sum(1 for line in handle if line.strip())
        return max(sum(1 for record in csv.reader(handle) if record) - 1, 0)


def read_rows(path: Path, *, issuer_code: str = "") -> Iterator[ReadRow]:
    """The rows of ``path`` in order (see the module doc); ``issuer_code`` for rows that name
    none. :class:`InvalidArgument` when a CSV header names an unknown column."""
    seen: set[tuple[str, str]] = set()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        records = _jsonl_records(handle) if is_jsonl(path) else _csv_records(handle)
        for line, record in records:
            row = _row(line, record, issuer_code)
            if row.request is not None:
                scope = (row.request.issuer_code, row.source_key)
                if scope in seen:
                    row = ReadRow(
                        line,
                        row.source_key,
                        refusal=refused(
                            row.source_key,
                            DUPLICATE,
                            f"source key {row.source_key} came earlier in the file",
                        ),
                    )
                else:
                    seen.add(scope)
            yield row


def _csv_records(handle: IO[str]) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in REQUIRED and n not in OPTIONAL and not _field_name(n)]
    missing = [n for n in REQUIRED if n not in names]
    if unknown or missing or len(set(names)) != len(names):
        problems = [f"unknown column {n!r}" for n in unknown]
        problems += [f"missing column {n!r}" for n in missing]
        if len(set(names)) != len(names):
            problems.append("a column is named twice")
        raise InvalidArgument.field("header", "; ".join(problems))
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            yield line, f"{len(cells)} cells, the header has {len(names)}"
            continue
        yield (
            line,
            {name: cell for name, cell in zip(names, cells, strict=True) if cell.strip() != ""},
        )


def _jsonl_records(handle: IO[str]) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    line = 0
    while True:
        text = handle.readline(MAX_LINE + 1)
        if not text:
            return
        line += 1
        if len(text) > MAX_LINE and not text.endswith("\n"):
            while text and not text.endswith("\n"):  # skip the rest of the long line
                text = handle.readline(MAX_LINE)
            yield line, f"longer than {MAX_LINE} characters"
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield line, f"not JSON: {exc}"
            continue
        if not isinstance(value, dict):
            yield line, "not a JSON object"
            continue
        yield line, value


def _field_name(name: str) -> bool:
    return name.startswith(FIELD_PREFIX) and len(name) > len(FIELD_PREFIX)


def _row(line: int, record: Mapping[str, Any] | str, issuer_code: str) -> ReadRow:
    if isinstance(record, str):
        return ReadRow(line, "", refusal=refused("", MALFORMED, f"line {line}: {record}"))
    key = record.get("source_key")
    source_key = key.strip() if isinstance(key, str) else ""
    try:
        return ReadRow(line, source_key, request=_request(record, issuer_code))
    except InvalidArgument as exc:
        problems = "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
        return ReadRow(
            line, source_key, refusal=refused(source_key, MALFORMED, f"line {line}: {problems}")
        )


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name, "")
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidArgument.field(name, "must be text")
    return str(value).strip()


def _date(record: Mapping[str, Any], name: str) -> date | None:
    text = _text(record, name)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument.field(name, "must be a date YYYY-MM-DD") from None


def _request(record: Mapping[str, Any], issuer_code: str) -> IssueRequest:
    fields: dict[str, object] = {}
    nested = record.get("fields")
    if nested is not None:
        if not isinstance(nested, dict):
            raise InvalidArgument.field("fields", "must be an object")
        fields.update(nested)
    unknown = []
    for name, value in record.items():
        if _field_name(name):
            fields[name] = value
        elif name not in REQUIRED and name not in OPTIONAL and name != "fields":
            unknown.append(name)
    if unknown:
        raise InvalidArgument.field(str(unknown[0]), "unknown column")
    for name in REQUIRED:
        if not _text(record, name):
            raise InvalidArgument.field(name, "required")
    check_source_key(_text(record, "source_key"))
    issuer = _text(record, "issuer_code") or issuer_code
    if not issuer:
        raise InvalidArgument.field("issuer_code", "required (no --issuer was given)")
    code_type = _text(record, "holder_code_type")
    if code_type not in ("001", "111"):
        raise InvalidArgument.field("holder_code_type", "001 (USCC) or 111 (resident ID)")
    return IssueRequest(
        type_code=_text(record, "type_code"),
        issuer_code=issuer,
        issuer_name="",  # the department's name, filled in by the importer
        holder_code_type=code_type,
        holder_code=_text(record, "holder_code"),
        fields=fields,
        valid_from=_date(record, "valid_from"),
        valid_until=_date(record, "valid_until"),
        number=_text(record, "number"),
        serial=_text(record, "serial"),
        holder_name=_text(record, "holder_name"),
    )


def result_record(line: int, outcome: RowOutcome) -> dict[str, Any]:
    """The results-file line of one row."""
    return {
        "line": line,
        "source_key": outcome.source_key,
        "status": outcome.status,
        "identifier": outcome.identifier,
        "reason": outcome.reason,
        "message": outcome.message,
    }


class ResultsFile:
    """The results of an import, one JSON line per row; reopened after a crash it keeps its
    complete lines (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[int, dict[str, Any]] = {}  # line -> its result, from an earlier run
        keep = 0
        if path.exists():
            with path.open("rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break  # cut off by the crash
                    try:
                        value = json.loads(raw)
                        self.done[int(value["line"])] = value
                    except (ValueError, KeyError, TypeError):
                        break
                    keep += len(raw)
            with path.open("r+b") as handle:
                handle.truncate(keep)
        self._handle: io.TextIOWrapper = path.open("a", encoding="utf-8")

    def write(self, line: int, outcome: RowOutcome) -> None:
        """Append the result of one row."""
        record = result_record(line, outcome)
        self.done[line] = record
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Write through to the file (after each chunk)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Flush and close."""
        self.flush()
        self._handle.close()
