"""The scanner shell's recovery ladder and watchdog against a fake bleak raising each BlueZ error."""

from __future__ import annotations

import logging

import pytest
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)

from base.backoff import Backoff
from drivers._status import Condition
from drivers.ble.recovery import Fault
from drivers.ble.scanner import BleakSource, _bleak_factory
from tests.unit.drivers.ble.fakes import FakeBleak, FakeControl, FakeTimer


def make(
    *outcomes: BaseException | None, control_error: BaseException | None = None
) -> tuple[BleakSource, FakeBleak, FakeTimer]:
    bleak = FakeBleak(*outcomes)
    timer = FakeTimer()
    source = BleakSource(
        adapter="hci0",
        timer=timer,
        scanner_factory=bleak.factory,
        control=FakeControl(bleak.log, control_error),
        backoff=Backoff(base=2.0, cap=60.0, jitter=0.0),
    )
    return source, bleak, timer


async def poll(source: BleakSource, times: int = 1, within: float = 1.0) -> None:
    for _ in range(times):
        assert await source.next_advert(within) is None


def in_progress() -> BleakDBusError:
    return BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"])


def not_ready() -> BleakDBusError:
    return BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"])


def failed() -> BleakDBusError:
    return BleakDBusError("org.bluez.Error.Failed", ["Failed"])


async def test_starts_lazily_and_goes_green_on_the_first_advert() -> None:
    source, bleak, _ = make()
    assert source.status.level is Condition.DEGRADED
    await poll(source)
    assert bleak.log == ["start"]
    assert source.scanning
    assert bleak.current is not None
    bleak.current.advert()
    advert = await source.next_advert(1.0)
    assert advert is not None
    assert advert.rssi == -60
    assert source.status.level is Condition.OK
    assert "scanning (active) on hci0" in source.status.detail


async def test_in_progress_stops_discovery_then_retries_with_a_new_scanner() -> None:
    source, bleak, _ = make(in_progress())
    await poll(source)
    assert source.status.level is Condition.DOWN
    assert "in_progress (attempt 1)" in source.status.detail
    await poll(source)
    assert bleak.log == ["start", "stop", "stop_discovery", "start"]
    assert bleak.made == 2
    assert source.scanning
    assert source.status.level is Condition.DEGRADED  # up again, waiting for the first advert


async def test_the_full_ladder_then_backoff_forever() -> None:
    errors = [in_progress(), not_ready(), failed(), in_progress(), in_progress(), not_ready()]
    source, bleak, timer = make(*errors)
    levels = []
    for _ in range(200):
        await poll(source, within=1.0)
        levels.append(source.status.level)
        if source.scanning:
            break
    assert source.scanning
    steps = [entry for entry in bleak.log if entry in ("stop_discovery", "power_cycle", "start")]
    assert steps == [
        "start",
        "stop_discovery",
        "start",  # rung 1
        "stop_discovery",
        "power_cycle",
        "start",  # rung 2
        "stop_discovery",
        "start",  # rung 3 (after 5 s)
        "stop_discovery",
        "power_cycle",
        "start",  # rung 4, backoff 2**4 * 2 = 32 s
        "stop_discovery",
        "power_cycle",
        "start",  # rung 4 again, 60 s (capped)
        "stop_discovery",
        "power_cycle",
        "start",  # success
    ]
    assert source.faults == [
        Fault.IN_PROGRESS,
        Fault.NOT_READY,
        Fault.FAILED,
        Fault.IN_PROGRESS,
        Fault.IN_PROGRESS,
        Fault.NOT_READY,
    ]
    assert all(level is Condition.DOWN for level in levels[:-1])  # red the whole time it was down
    assert timer.t >= 5 + 32 + 60


async def test_no_adapter_reports_red_and_looks_again_every_30_s_without_crashing() -> None:
    missing = BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
    )
    source, bleak, timer = make(missing, missing, missing, None)
    await poll(source)
    assert source.status.level is Condition.DOWN
    assert "no adapter" in source.status.detail
    for _ in range(100):
        await poll(source)
        if source.scanning:
            break
    assert source.scanning
    assert bleak.log == [
        "start",
        "stop",
        "start",
        "stop",
        "start",
        "stop",
        "start",
    ]  # nothing to stop or cycle
    assert 90 <= timer.t < 95


async def test_no_dbus_system_bus_is_reported_as_no_adapter() -> None:
    source, _, _ = make(FileNotFoundError(2, "No such file or directory"))
    await poll(source)
    assert source.status.level is Condition.DOWN
    assert source.status.detail.startswith("no adapter")
    assert "D-Bus" in source.status.detail


async def test_adapter_gone_waits_without_power_cycling() -> None:
    source, bleak, _ = make(BleakError("adapter 'hci0' not found"), None)
    await poll(source)
    assert source.faults == [Fault.ADAPTER_GONE]
    assert "adapter gone" in source.status.detail
    for _ in range(10):
        await poll(source)
    assert source.scanning
    assert "power_cycle" not in bleak.log
    assert "stop_discovery" not in bleak.log


async def test_bluetoothd_restart_gets_a_new_scanner_after_1_5_s() -> None:
    source, bleak, timer = make(
        BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", ["The name org.bluez was not provided"])
    )
    await poll(source)
    assert source.faults == [Fault.BLUEZ_RESTARTED]
    for _ in range(5):
        await poll(source)
        if source.scanning:
            break
    assert source.scanning
    assert bleak.made == 2
    assert timer.slept == [1.0, 0.5]  # the retry waited exactly UNKNOWN_OBJECT_WAIT_S


async def test_a_start_that_hangs_is_a_timeout_fault() -> None:
    source, _, _ = make(TimeoutError())
    await poll(source)
    assert source.faults == [Fault.TIMEOUT]
    assert source.status.level is Condition.DOWN


async def test_watchdog_restarts_after_90_s_of_silence() -> None:
    source, bleak, timer = make()
    await poll(source)
    assert bleak.current is not None
    bleak.current.advert()
    assert await source.next_advert(1.0) is not None
    first = bleak.current
    for _ in range(200):
        await poll(source, within=1.0)
        if bleak.made == 2:
            break
    assert bleak.made == 2
    assert not first.running
    assert source.restarts == 1
    assert 90 <= timer.t <= 90 + 30 + 2  # noticed at the next 30 s watchdog check
    assert bleak.log[-3:] == ["stop", "stop_discovery", "start"]
    assert source.status.level is Condition.DEGRADED
    assert bleak.current is not None and bleak.current is not first
    bleak.current.advert()
    assert await source.next_advert(1.0) is not None
    assert source.status.level is Condition.OK


async def test_a_stop_that_raises_in_progress_does_not_break_the_restart() -> None:
    source, bleak, _ = make()
    bleak.stop_error = in_progress()  # bleak#2021
    for _ in range(200):
        await poll(source)
        if bleak.made == 2:
            break
    assert source.scanning
    assert bleak.made == 2


async def test_failing_recovery_steps_do_not_stop_the_ladder() -> None:
    source, bleak, _ = make(
        in_progress(), in_progress(), None, control_error=RuntimeError("org.bluez.Error.Busy")
    )
    for _ in range(20):
        await poll(source)
        if source.scanning:
            break
    assert source.scanning
    assert bleak.log.count("start") == 3


@pytest.mark.parametrize(
    "error",
    [
        in_progress(),
        not_ready(),
        failed(),
        BleakError("adapter 'hci1' not found"),
        BleakDBusError(
            "org.freedesktop.DBus.Error.UnknownObject", ['Method "StartDiscovery" doesn\'t exist']
        ),
        BleakDBusError("org.freedesktop.DBus.Error.NoReply", ["Did not receive a reply"]),
        BleakBluetoothNotAvailableError("powered off", BleakBluetoothNotAvailableReason.POWERED_OFF),
        EOFError(),
        RuntimeError("something unexpected"),
    ],
)
async def test_every_error_is_red_never_raised_and_never_logs_an_address(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source, _, _ = make(error)
    await poll(source)
    assert source.status.level is Condition.DOWN
    assert not source.scanning
    assert caplog.records
    for record in caplog.records:
        assert record.levelno == logging.WARNING
        assert "fault" in record.__dict__


async def test_addresses_in_bluez_errors_are_scrubbed() -> None:
    error = BleakDBusError("org.bluez.Error.Failed", ["/org/bluez/hci0/dev_C2_11_22_33_44_55 went away"])
    source, _, _ = make(error)
    await poll(source)
    assert "C2_11_22_33_44_55" not in source.status.detail
    assert "<addr>" in source.status.detail


def test_the_real_bleak_factory_builds_scanners_for_both_modes() -> None:
    for mode in ("active", "passive"):
        scanner = _bleak_factory("hci0", mode)(lambda device, adv: None)
        assert hasattr(scanner, "start")


async def test_a_scanner_that_cannot_even_be_built_takes_the_ladder() -> None:
    bleak = FakeBleak()
    calls = 0

    def factory(callback: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise BleakError("passive scanning mode requires bluez or_patterns")
        return bleak.factory(callback)  # type: ignore[arg-type]

    source = BleakSource(timer=FakeTimer(), scanner_factory=factory, control=FakeControl(bleak.log))  # type: ignore[arg-type]
    await poll(source)
    assert source.status.level is Condition.DOWN
    assert source.faults == [Fault.OTHER]
    await poll(source)
    assert source.scanning
