"""Capped exponential backoff with full jitter: the one restart/retry policy of the agent."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delay before the next attempt: min(cap, base * 2**n) scaled by jitter in [1-jitter, 1].

    Full jitter keeps a fleet of devices that lost the same broker from reconnecting in step.
    `reset()` after a success so the next failure starts small again.
    """

    base: float = 0.5
    cap: float = 60.0
    jitter: float = 0.5
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        raw = min(self.cap, self.base * float(2 ** min(self.attempts, 30)))
        self.attempts += 1
        return raw * (1 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0
