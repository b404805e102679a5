"""What every component receives: the config, the health board, the state DB and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import ShopEdgeConfig
from agent.state import StateSettings
from base.health import HealthBoard
from base.statedb import StateDB

__all__ = ["AgentContext"]


@dataclass
class AgentContext:
    """Shared, long-lived objects of one agent process (built once in `agent.daemon`)."""

    config: ShopEdgeConfig
    db: StateDB
    health: HealthBoard = field(default_factory=HealthBoard)
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    # Services later capabilities register (outbox, display, payments...), by name.
    services: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.services.setdefault("settings", StateSettings(self.db))
