"""Times from untrusted LINE events: plausible numbers only, never an exception."""

from __future__ import annotations

import math

import pytest

from membership.event_time import MAX_EPOCH_S, epoch_seconds


@pytest.mark.parametrize(
    ("value", "milliseconds", "expected"),
    [
        (1_795_000_000_123, True, 1_795_000_000.123),
        (1_795_000_000.5, False, 1_795_000_000.5),
        (10**400, True, None),
        (10**400, False, None),
        (-1, False, None),
        (0, True, None),
        (math.inf, False, None),
        (math.nan, False, None),
        (True, False, None),
        ("1795000000", False, None),
        (None, True, None),
        (int(MAX_EPOCH_S) + 1, False, None),
        (int(MAX_EPOCH_S), False, MAX_EPOCH_S),
    ],
)
def test_only_plausible_times_are_read(value: object, milliseconds: bool, expected: float | None) -> None:
    got = epoch_seconds(value, milliseconds=milliseconds)
    assert got == (pytest.approx(expected) if expected is not None else None)
