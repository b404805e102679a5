"""The pure parts of the notify protocol: addresses, watchdog interval, readiness, framing."""

from __future__ import annotations

import pytest

from agent.sdnotify import format_message, notify_address, readiness, watchdog_interval


def test_notify_address_forms() -> None:
    assert notify_address({}) is None
    assert notify_address({"NOTIFY_SOCKET": ""}) is None
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "@sd-notify"}) == b"\0sd-notify"
    with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
        notify_address({"NOTIFY_SOCKET": "relative/path"})


def test_watchdog_interval_is_half_and_respects_pid() -> None:
    assert watchdog_interval({}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 10) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, 10) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 10) is None
    with pytest.raises(ValueError, match="WATCHDOG_USEC"):
        watchdog_interval({"WATCHDOG_USEC": "soon"}, 10)


@pytest.mark.parametrize(
    ("reported", "elapsed", "ready", "missing"),
    [
        (set(), 0.0, False, ("ble", "pos")),
        ({"pos"}, 10.0, False, ("ble",)),
        ({"pos", "ble"}, 0.0, True, ()),
        ({"pos", "ble", "extra"}, 0.0, True, ()),
        ({"pos"}, 60.0, True, ("ble",)),
    ],
)
def test_readiness(reported: set[str], elapsed: float, ready: bool, missing: tuple[str, ...]) -> None:
    state = readiness(expected={"pos", "ble"}, reported=reported, elapsed=elapsed, grace=60.0)
    assert state.ready is ready
    assert state.missing == missing


def test_format_message_keeps_one_line_per_field() -> None:
    assert format_message({"READY": "1", "STATUS": "a\nb"}) == b"READY=1\nSTATUS=a b"
    long = format_message({"STATUS": "x" * 1000}).decode()
    assert len(long) == len("STATUS=") + 400 and long.endswith("…")
