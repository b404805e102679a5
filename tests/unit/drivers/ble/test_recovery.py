"""The recovery ladder as data: classify, plan and watchdog_action are pure and total."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)

from drivers._status import Condition
from drivers.ble import recovery
from drivers.ble.const import WATCHDOG_INTERVAL_S, WATCHDOG_SILENCE_S
from drivers.ble.recovery import (
    LADDER,
    Fault,
    WatchdogAction,
    classify,
    plan,
    scrub_addresses,
    watchdog_action,
)


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"]), Fault.IN_PROGRESS),
        (BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]), Fault.NOT_READY),
        (BleakDBusError("org.bluez.Error.Failed", ["No discovery started"]), Fault.FAILED),
        (BleakError("adapter 'hci1' not found"), Fault.ADAPTER_GONE),
        (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", ["org.bluez"]), Fault.BLUEZ_RESTARTED),
        (
            BleakDBusError("org.freedesktop.DBus.Error.UnknownObject", ["no such object"]),
            Fault.BLUEZ_RESTARTED,
        ),
        (EOFError(), Fault.BLUEZ_RESTARTED),
        (
            BleakBluetoothNotAvailableError(
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
            ),
            Fault.NO_ADAPTER,
        ),
        (FileNotFoundError(2, "No such file or directory"), Fault.NO_ADAPTER),
        (TimeoutError(), Fault.TIMEOUT),
        (ValueError("odd"), Fault.OTHER),
    ],
)
def test_classify(error: BaseException, fault: Fault) -> None:
    assert classify(error)[0] is fault


def test_ladder_rungs_follow_the_documented_order() -> None:
    assert [(r.stop_discovery, r.power_cycle) for r in LADDER] == [
        (True, False),
        (True, True),
        (True, False),
        (True, True),
    ]
    assert LADDER[-1].delay_s is None  # the last rung backs off


@pytest.mark.parametrize(
    "fault", [Fault.IN_PROGRESS, Fault.NOT_READY, Fault.FAILED, Fault.TIMEOUT, Fault.OTHER]
)
def test_plan_walks_the_ladder_and_stays_on_the_last_rung(fault: Fault) -> None:
    plans = [plan(fault, attempt, backoff_s=42.0) for attempt in range(1, 8)]
    assert [(p.stop_discovery, p.power_cycle) for p in plans] == [
        (True, False),
        (True, True),
        (True, False),
        (True, True),
        (True, True),
        (True, True),
        (True, True),
    ]
    assert [p.delay_s for p in plans] == [0.0, 0.0, 5.0, 42.0, 42.0, 42.0, 42.0]
    assert all(p.level is Condition.DOWN for p in plans)


def test_plan_special_paths() -> None:
    no_adapter = plan(Fault.NO_ADAPTER, 5, backoff_s=1.0)
    assert (no_adapter.stop_discovery, no_adapter.power_cycle, no_adapter.delay_s) == (False, False, 30.0)
    assert no_adapter.detail.startswith("no adapter")
    gone = plan(Fault.ADAPTER_GONE, 2, backoff_s=8.0)
    assert (gone.stop_discovery, gone.power_cycle, gone.delay_s) == (False, False, 8.0)
    restarted = plan(Fault.BLUEZ_RESTARTED, 1, backoff_s=8.0)
    assert (restarted.power_cycle, restarted.delay_s) == (False, 1.5)
    assert plan(Fault.BLUEZ_RESTARTED, 2, backoff_s=8.0).power_cycle  # still broken: climb the ladder


def test_watchdog_action() -> None:
    assert WATCHDOG_SILENCE_S == 90.0
    assert WATCHDOG_INTERVAL_S == 30.0
    assert watchdog_action(now=89.9, last_seen=None, scanning_since=0.0) is WatchdogAction.OK
    assert watchdog_action(now=90.0, last_seen=None, scanning_since=0.0) is WatchdogAction.RESTART
    assert watchdog_action(now=150.0, last_seen=61.0, scanning_since=0.0) is WatchdogAction.OK
    assert watchdog_action(now=151.0, last_seen=61.0, scanning_since=0.0) is WatchdogAction.RESTART
    # A fresh scan gets a full window even if the last advert is old.
    assert watchdog_action(now=200.0, last_seen=10.0, scanning_since=150.0) is WatchdogAction.OK


def test_scrub_addresses() -> None:
    assert scrub_addresses("dev_C2_11_22_33_44_55 and aa:bb:cc:dd:ee:ff") == "dev_<addr> and <addr>"
    assert scrub_addresses("hci0 InProgress 1234") == "hci0 InProgress 1234"


def test_recovery_module_is_pure() -> None:
    tree = ast.parse(Path(recovery.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {"asyncio", "bleak", "dbus_fast", "sqlalchemy", "aiohttp"} & {
        name.split(".")[0] for name in imported
    }
