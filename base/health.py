"""Component health: green (working), amber (degraded or waiting), red (down).

Components report into one `HealthBoard`; the daemon's status line, the systemd STATUS=,
`/status` and `doctor` all read the same board.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ComponentHealth", "HealthBoard", "Level"]


class Level(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


_ORDER = {Level.GREEN: 0, Level.AMBER: 1, Level.RED: 2}


@dataclass(frozen=True, kw_only=True)
class ComponentHealth:
    name: str
    level: Level
    detail: str
    since: float


class HealthBoard:
    """The latest health of every component, with change listeners."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[str, ComponentHealth] = {}
        self._listeners: list[Callable[[ComponentHealth], None]] = []

    def set(self, name: str, level: Level, detail: str = "") -> None:
        old = self._items.get(name)
        if old and old.level == level and old.detail == detail:
            return
        since = old.since if old and old.level == level else self._clock()
        item = ComponentHealth(name=name, level=level, detail=detail, since=since)
        self._items[name] = item
        for listener in self._listeners:
            listener(item)

    def get(self, name: str) -> ComponentHealth | None:
        return self._items.get(name)

    def listen(self, listener: Callable[[ComponentHealth], None]) -> None:
        self._listeners.append(listener)

    def snapshot(self) -> list[ComponentHealth]:
        return sorted(self._items.values(), key=lambda item: item.name)

    def overall(self) -> Level:
        levels = [item.level for item in self._items.values()] or [Level.GREEN]
        return max(levels, key=_ORDER.__getitem__)

    def summary(self) -> str:
        """One line for STATUS= and the logs: 'green: pos ok; amber: mqtt disconnected'."""
        parts = [
            f"{item.name} {item.level}" + (f" ({item.detail})" if item.detail else "")
            for item in self.snapshot()
        ]
        return f"{self.overall()}: " + "; ".join(parts) if parts else "starting"
