"""Health words of the lower rooms, mapped to the board's levels in one place.

`drivers` and `offline_queue` are leaves: they say how they are in their own terms
(`drivers._status.Condition`, `offline_queue.OutboxCondition`), and the agent decides what
that means for the device's green/amber/red.
"""

from __future__ import annotations

from base.health import HealthBoard, Level
from drivers._status import Condition
from offline_queue import OutboxCondition

__all__ = ["DRIVER_LEVELS", "OUTBOX_LEVELS", "DriverHealth", "driver_level"]

DRIVER_LEVELS: dict[Condition, Level] = {
    Condition.OK: Level.GREEN,
    Condition.DEGRADED: Level.AMBER,
    Condition.DOWN: Level.RED,
}

OUTBOX_LEVELS: dict[OutboxCondition, Level] = {
    OutboxCondition.OK: Level.GREEN,
    OutboxCondition.OVER_BUDGET: Level.AMBER,
    OutboxCondition.WRITE_FAILED: Level.RED,
}


def driver_level(condition: Condition) -> Level:
    return DRIVER_LEVELS[condition]


class DriverHealth:
    """A driver service's `StatusSink` that writes to the agent's health board."""

    def __init__(self, board: HealthBoard) -> None:
        self.board = board

    def set(self, name: str, condition: Condition, detail: str = "") -> None:
        self.board.set(name, DRIVER_LEVELS[condition], detail)
