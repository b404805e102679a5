"""The doctor's rows and the rule for reading them: pass/warn/fail, one fix hint, an exit code."""

from __future__ import annotations

import calendar
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

__all__ = [
    "CLOCK_FLOOR",
    "LINEPAY_HOSTS",
    "LINE_API",
    "MIN_FREE_MB",
    "OUTBOX_WARN_DEPTH",
    "SYSTEM_FONTS",
    "Environment",
    "Row",
    "Status",
    "exit_code",
]

LINEPAY_HOSTS = {"sandbox": "https://sandbox-api-pay.line.me", "production": "https://api-pay.line.me"}
LINE_API = "https://api.line.me"
# Free space below this fails outright: SQLite needs room for its WAL and a checkpoint.
MIN_FREE_MB = 50
# Tokens and LINE Pay nonces are useless with a clock before this build's release (UTC).
CLOCK_FLOOR = float(calendar.timegm((2026, 1, 1, 0, 0, 0)))
# At the default batch of 50 per MQTT message this is 20 batches: a backlog that is not
# draining, not a brief outage. A warning, because records wait safely on disk.
OUTBOX_WARN_DEPTH = 1000
SYSTEM_FONTS = Path("/usr/share/fonts")


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a check verdict, not a password
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, kw_only=True)
class Row:
    """One check's result; `hint` says what to do when it did not pass."""

    check: str
    status: Status
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, kw_only=True)
class Environment:
    """Where the doctor looks on this machine (tests point it elsewhere)."""

    font_roots: tuple[Path, ...] = (SYSTEM_FONTS,)
    chromium_names: tuple[str, ...] = ("chromium", "chromium-browser")
    system_bus: str = field(default_factory=lambda: os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", ""))

    @classmethod
    def from_environ(cls) -> Environment:
        """SHOPEDGE_FONT_DIRS (colon separated) replaces /usr/share/fonts as the font root."""
        dirs = os.environ.get("SHOPEDGE_FONT_DIRS")
        if dirs is None:
            return cls()
        return cls(font_roots=tuple(Path(d) for d in dirs.split(":") if d))

    def font_candidates(self) -> tuple[tuple[str, str], ...]:
        """The display's candidate font paths, under each font root."""
        from drivers.display.fonts import CANDIDATES

        def moved(path: str, root: Path) -> str:
            rel = Path(path).relative_to(SYSTEM_FONTS) if path.startswith(str(SYSTEM_FONTS)) else None
            return str(root / rel) if rel is not None else path

        return tuple((moved(r, root), moved(b, root)) for root in self.font_roots for r, b in CANDIDATES)


def exit_code(rows: Sequence[Row]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(row.status is Status.FAIL for row in rows) else 0


