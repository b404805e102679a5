"""A driver's health as plain data: the agent maps it to its own health levels.

`drivers` imports no other project package, so its components say how they are in these words,
and `agent.wiring.health` turns them into the board's green/amber/red.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

__all__ = ["Condition", "StatusSink"]


class Condition(StrEnum):
    OK = "ok"  # working as configured
    DEGRADED = "degraded"  # starting, recovering, or working with a fault
    DOWN = "down"  # not working


class StatusSink(Protocol):
    """Where a long-running driver service reports its condition (the agent's health board)."""

    def set(self, name: str, condition: Condition, detail: str = "") -> None: ...
