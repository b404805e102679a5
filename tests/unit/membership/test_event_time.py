"""Times from untrusted LINE events: absent or not a number is unknown; a number that is no
time is a permanent `EventTimeError`, never an OverflowError."""

from __future__ import annotations

import math

import pytest

from membership.event_time import MAX_EPOCH_S, EventTimeError, event_time


@pytest.mark.parametrize(
    ("value", "milliseconds", "expected"),
    [
        (1_795_000_000_123, True, 1_795_000_000.123),
        (1_795_000_000.5, False, 1_795_000_000.5),
        (0, True, 0.0),
        (int(MAX_EPOCH_S), False, MAX_EPOCH_S),
        (True, False, None),
        ("1795000000", False, None),
        (None, True, None),
    ],
)
def test_times_and_unknowns(value: object, milliseconds: bool, expected: float | None) -> None:
    got = event_time(value, field="event.timestamp", milliseconds=milliseconds)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("value", [10**400, -1, math.inf, math.nan, int(MAX_EPOCH_S) + 1, 1e300])
def test_a_number_that_is_no_time_is_a_permanent_error_naming_the_field(value: object) -> None:
    with pytest.raises(EventTimeError, match=r"event\.timestamp is not a time") as info:
        event_time(value, field="event.timestamp")
    assert info.value.permanent is True
