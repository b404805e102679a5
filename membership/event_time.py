"""Times read from a relayed LINE event: LINE's `timestamp` (epoch milliseconds) and the relay's
`received_at` (epoch seconds), both untrusted JSON numbers.

One rule for every reader: a time is a real number between the epoch and year 9999, else it is
unknown (None). JSON allows integers of any size (`10**400` is valid JSON), and `float()` of one
raises OverflowError, which would make one event fail the same way on every retry.
"""

from __future__ import annotations

import math

__all__ = ["MAX_EPOCH_S", "epoch_seconds"]

# 9999-12-31T23:59:59Z: beyond anything a LINE event or a relay clock can mean.
MAX_EPOCH_S = 253_402_300_799.0


def epoch_seconds(value: object, *, milliseconds: bool = False) -> float | None:
    """`value` as epoch seconds, or None when it is not a plausible time."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    scale = 1000.0 if milliseconds else 1.0
    if isinstance(value, int) and not 0 < value <= MAX_EPOCH_S * scale:
        return None
    seconds = float(value) / scale
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_EPOCH_S:
        return None
    return seconds
