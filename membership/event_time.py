"""Times read from a relayed LINE event: LINE's `timestamp` (epoch milliseconds) and the relay's
`received_at` (epoch seconds), both untrusted JSON numbers.

One rule for every reader: a time that is absent or not a number is unknown (None), as before;
a number that is no time (negative, not finite, past year 9999, or an integer too large for a
float at all: `10**400` is valid JSON and `float()` of it raises OverflowError) makes the event
malformed, an `EventTimeError` that the outbox consumers' rule treats as permanent (the record
becomes a dead letter with this reason, and the stream moves on).
"""

from __future__ import annotations

import math

__all__ = ["MAX_EPOCH_S", "EventTimeError", "event_time"]

# 9999-12-31T23:59:59Z: beyond anything a LINE event or a relay clock can mean.
MAX_EPOCH_S = 253_402_300_799.0


class EventTimeError(ValueError):
    """A LINE event carries a number that is no time; the event is malformed for good."""

    permanent = True


def event_time(value: object, *, field: str, milliseconds: bool = False) -> float | None:
    """`value` as epoch seconds; None when absent or not a number.

    Raises:
        EventTimeError: a number that is no time, naming `field`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    scale = 1000.0 if milliseconds else 1.0
    if isinstance(value, int) and not 0 <= value <= MAX_EPOCH_S * scale:
        shown = value if abs(value) < 10**30 else f"a {value.bit_length()}-bit integer"
        raise EventTimeError(f"{field} is not a time: {shown}")
    seconds = float(value) / scale
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_EPOCH_S:
        raise EventTimeError(f"{field} is not a time: {value!r}")
    return seconds
