"""Structured logging: one JSON object per line on stderr.

Access lines (``govtrust.access``) carry the method, status code, duration, request id and the
principal's actor string — never request bodies, peer addresses or any personal data.

Every call writes an access line, so the line is cheap to make: :func:`access_log` builds its
record without ``Logger.info``'s caller look-up (``findCaller`` walks the stack; the JSON line
has no use for it), the formatter reuses the timestamp text within a second and one JSON
encoder, and :class:`BufferedStreamHandler` writes lines in batches — one ``write`` per batch
rather than a ``write`` and a ``flush`` per line. Warnings and errors (and everything queued
before them) are written at once; other lines at most ``FLUSH_DELAY_SECONDS`` later; whatever
is queued is written when logging shuts down at exit.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

ACCESS_LOGGER = "govtrust.access"
FLUSH_DELAY_SECONDS = 0.05
FLUSH_LINES = 256

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is emitted.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_encode = _ENCODER.encode


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: time, level, logger, pid, message and extras."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:  # strftime once per second, not once per line
            cached = self._second = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
            )
        return f"{cached[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process or os.getpid(),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key[0] != "_":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry)


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes formatted lines in batches (see the module docstring)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        delay: float = FLUSH_DELAY_SECONDS,
        max_lines: int = FLUSH_LINES,
    ) -> None:
        super().__init__(stream)
        self.delay = delay
        self.max_lines = max_lines
        self._pending: list[str] = []
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Called with the handler's lock held (``Handler.handle``).
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
            return
        pending = self._pending
        pending.append(line)
        if record.levelno >= logging.WARNING or len(pending) >= self.max_lines:
            self._write()
        elif len(pending) == 1:  # the first queued line: make sure it goes out soon
            if self._flusher is None or not self._flusher.is_alive():
                flusher = threading.Thread(
                    target=self._flush_soon, name="govtrust-log-flush", daemon=True
                )
                try:
                    flusher.start()
                except RuntimeError:  # no new threads at interpreter shutdown: write now
                    self._write()
                    return
                self._flusher = flusher
            self._wake.set()

    def _flush_soon(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.delay)  # let the lines of a burst gather into one write
            self.flush()

    def _write(self) -> None:
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nothing sensible to do
            pass

    def flush(self) -> None:
        """Write every queued line now."""
        with self.lock:  # type: ignore[union-attr]  # created in Handler.__init__
            self._write()


def setup_logging(level: str = "info") -> None:
    """Send every log record of this process to stderr as JSON lines."""
    handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        existing.flush()
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own lifecycle chatter adds nothing to our access lines.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


_access = logging.getLogger(ACCESS_LOGGER)


def access_enabled() -> bool:
    """Whether access lines are written at all (the level admits INFO): callers on a hot path
    skip building the line's fields when not."""
    return _access.isEnabledFor(logging.INFO)


def access_log(**fields: Any) -> None:
    """Emit one access line (fields must not contain personal data)."""
    if _access.isEnabledFor(logging.INFO):
        _access.handle(
            _access.makeRecord(
                ACCESS_LOGGER,
                logging.INFO,
                ACCESS_LOGGER,
                0,
                fields.get("event", "call"),
                (),
                None,
                extra=fields,
            )
        )
