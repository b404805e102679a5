"""Structured logging: JSON lines for journald when not on a TTY, readable lines on a TTY.

Owns the one guarantee that matters for operations: no secret from the config ever reaches
a log line. `RedactingFilter` replaces every configured secret value (and anything that looks
like a bearer token) before a record is formatted by any handler.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["JSONFormatter", "RedactingFilter", "setup_logging"]

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_STANDARD = set(vars(logging.makeLogRecord({})))
REDACTED = "***"


class RedactingFilter(logging.Filter):
    """Scrubs known secret values from the message, its arguments and structured extras."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Longest first so a secret that contains another is replaced whole.
        merged = {s for s in [*self._secrets, *secrets] if len(s) >= 4}
        self._secrets = sorted(merged, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _BEARER.sub(r"\1" + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "message"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_extras(record))
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


class ReadableFormatter(logging.Formatter):
    """`12:00:01 INFO  agent.supervisor: component up  component=pos` for people at a TTY."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname:<5} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line}  {extras}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


_FILTER = RedactingFilter()


def setup_logging(
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    json_lines: bool | None = None,
) -> RedactingFilter:
    """Install the root handler; returns the shared redaction filter (more secrets may be added)."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter() if json_lines else ReadableFormatter())
    _FILTER.add(secrets)
    handler.addFilter(_FILTER)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return _FILTER
