"""The LINE Beacon advertiser against a stand-in bluetoothd on a private dbus-daemon: the advert
BlueZ reads over D-Bus, the rotating message across a slot edge, and getting the advert back
after bluetoothd restarts, after an adapter reset and after refusals (the recovery ladder)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from drivers._status import Condition
from drivers.ble.advertiser import BeaconAdvertiser
from drivers.ble.frames import parse_line_beacon
from drivers.ble.recovery import Fault
from drivers.ble.simple_beacon import frame
from membership.beacon_code import SLOT_S, Verdict, code_at, verify
from tests.integration.fake_bluez import HAVE_DBUS, FakeBluez, private_bus

pytestmark = pytest.mark.skipif(not HAVE_DBUS, reason="needs dbus-daemon")

HWID = bytes.fromhex("32af519e88")
KEY = b"store-binding-key"


@pytest.fixture
def bus_address() -> Iterator[str]:
    with private_bus() as address:
        yield address


@pytest.fixture
async def bluez(bus_address: str) -> AsyncIterator[FakeBluez]:
    fake = await FakeBluez(bus_address).start()
    try:
        yield fake
    finally:
        await fake.stop()


class Sleeps:
    """Records the ladder's waits and lets the loop run on without waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(advertiser: BeaconAdvertiser) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(advertiser.run(), name="shopedge.beacon.advertise")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll a status the advertiser keeps as plain data (it has no event to wait on)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_registers_a_broadcaster_bluez_can_read(bluez: FakeBluez, bus_address: str) -> None:
    message = bytes.fromhex("0032006900faffff000199ff88")
    advertiser = BeaconAdvertiser(hwid=HWID, message=lambda: message, bus_address=bus_address)
    async with running(advertiser):
        await bluez.wait_for(lambda: bluez.adverts)
        advert = bluez.only()
        assert advert.properties["Type"] == "broadcast"
        assert advert.properties["ServiceUUIDs"] == ["fe6f"]
        assert advert.frame == frame(HWID, message)
        assert advert.properties["MinInterval"] == advert.properties["MaxInterval"] == 153
        assert parse_line_beacon(advert.frame) is not None
        await until(lambda: advertiser.status.condition is Condition.OK)
        assert "152.5 ms" in advertiser.status.detail
        assert advertiser.registrations == 1
    # cancelled (Ctrl-C, shutdown): the advert is taken down, not left to the bus to notice
    assert bluez.adverts == {}
    assert bluez.log[-1] == "unregistered"


async def test_rotating_code_changes_at_the_slot_edge(bluez: FakeBluez, bus_address: str) -> None:
    now = [1_790_000_100.0 - 0.5]  # half a second before a slot edge

    advertiser = BeaconAdvertiser(
        hwid=HWID, message=lambda: code_at(KEY, HWID, now[0]), bus_address=bus_address, check_every=0.05
    )
    async with running(advertiser):
        await bluez.wait_for(lambda: bluez.adverts)
        before = bluez.only().frame
        assert before == frame(HWID, code_at(KEY, HWID, now[0]))
        await asyncio.sleep(0.2)
        assert bluez.only().updates == 0  # same slot: nothing re-sent
        now[0] += 1.0  # across the edge
        await bluez.wait_for(lambda: bluez.only().updates == 1)
        after = bluez.only().frame
        assert after != before
        assert after == frame(HWID, code_at(KEY, HWID, now[0]))
        dm_before, dm_after = before[7:], after[7:]
        assert verify(KEY, HWID, dm_after, now[0]) is Verdict.CURRENT
        assert verify(KEY, HWID, dm_before, now[0]) is Verdict.PREVIOUS  # a phone that saw it just before
        assert verify(KEY, HWID, dm_before, now[0] + SLOT_S) is Verdict.INVALID
        assert advertiser.registrations == 1  # updated in place, never re-registered


async def test_registers_again_after_bluetoothd_restarts(bus_address: str) -> None:
    first = await FakeBluez(bus_address).start()
    sleeps = Sleeps()
    advertiser = BeaconAdvertiser(hwid=HWID, message=lambda: b"\x00", bus_address=bus_address, sleep=sleeps)
    async with running(advertiser):
        await first.wait_for(lambda: first.adverts)
        await first.stop()
        await until(lambda: "bluetoothd stopped" in advertiser.status.detail)
        assert advertiser.status.condition is Condition.DOWN
        second = await FakeBluez(bus_address).start()  # starts with no adverts, like bluetoothd
        try:
            await second.wait_for(lambda: second.adverts)
            assert second.only().frame == frame(HWID, b"\x00")
            await until(lambda: advertiser.status.condition is Condition.OK)
            assert advertiser.registrations == 2
        finally:
            await second.stop()


async def test_registers_again_when_a_new_bluetoothd_takes_over_the_name(bus_address: str) -> None:
    first = await FakeBluez(bus_address).start(replaceable=True)
    advertiser = BeaconAdvertiser(hwid=HWID, message=lambda: b"\x03", bus_address=bus_address, sleep=Sleeps())
    async with running(advertiser):
        await first.wait_for(lambda: first.adverts)
        second = await FakeBluez(bus_address).start(replace=True)  # NameOwnerChanged(old, new)
        try:
            await second.wait_for(lambda: second.adverts)
            assert second.only().frame == frame(HWID, b"\x03")
            await until(lambda: advertiser.registrations == 2)
        finally:
            await second.stop()
            await first.stop()


async def test_registers_again_after_an_adapter_reset(bluez: FakeBluez, bus_address: str) -> None:
    advertiser = BeaconAdvertiser(hwid=HWID, message=lambda: b"\x01", bus_address=bus_address)
    async with running(advertiser):
        await bluez.wait_for(lambda: bluez.adverts)
        await bluez.release_all()
        await bluez.wait_for(lambda: bluez.log[-1] == "registered" and bluez.log.count("registered") == 2)
        assert bluez.only().frame == frame(HWID, b"\x01")
        await until(lambda: advertiser.registrations == 2)


async def test_an_unplugged_adapter_is_retried_until_it_returns(bluez: FakeBluez, bus_address: str) -> None:
    sleeps = Sleeps()
    advertiser = BeaconAdvertiser(hwid=HWID, message=lambda: b"\x02", bus_address=bus_address, sleep=sleeps)
    async with running(advertiser):
        await bluez.wait_for(lambda: bluez.adverts)
        await bluez.unplug()
        await until(lambda: len(sleeps.delays) >= 2)  # the manager object is gone: the ladder runs
        assert advertiser.status.condition is Condition.DOWN
        assert advertiser.faults[:2] == [Fault.BLUEZ_RESTARTED, Fault.BLUEZ_RESTARTED]
        assert sleeps.delays[0] == 1.5  # bluetoothd's objects come back within 1.5 s
        bluez.adapter_present = True  # plugged back in
        await bluez.wait_for(lambda: bluez.adverts)
        await until(lambda: advertiser.status.condition is Condition.OK)
        assert bluez.only().frame == frame(HWID, b"\x02")
        assert advertiser.registrations == 2


async def test_refusals_take_the_recovery_ladder(bluez: FakeBluez, bus_address: str) -> None:
    bluez.refuse = ["org.bluez.Error.NotPermitted", "org.bluez.Error.Failed", "org.bluez.Error.Failed"]
    sleeps = Sleeps()
    cycles: list[str] = []

    class Control:
        async def power_cycle(self) -> None:
            cycles.append("cycle")

    advertiser = BeaconAdvertiser(
        hwid=HWID, message=lambda: b"\x00", bus_address=bus_address, sleep=sleeps, control=Control()
    )
    async with running(advertiser):
        await bluez.wait_for(lambda: bluez.adverts)
        await until(lambda: advertiser.status.condition is Condition.OK)
    assert advertiser.faults == [Fault.FAILED, Fault.FAILED, Fault.FAILED]
    # rung 1: retry at once; rung 2: power-cycle, retry at once; rung 3: give bluetoothd 5 s
    assert sleeps.delays == [0.0, 0.0, 5.0]
    assert cycles == ["cycle"]


async def test_no_bluetoothd_is_reported_and_retried(bus_address: str) -> None:
    sleeps = Sleeps()
    advertiser = BeaconAdvertiser(hwid=HWID, message=lambda: b"\x00", bus_address=bus_address, sleep=sleeps)
    async with running(advertiser):
        await until(lambda: len(sleeps.delays) >= 1)
        assert advertiser.status.condition is Condition.DOWN
        assert advertiser.faults[0] is Fault.BLUEZ_RESTARTED
        assert sleeps.delays[0] == 1.5
        bluez = await FakeBluez(bus_address).start()
        try:
            await bluez.wait_for(lambda: bluez.adverts)
            await until(lambda: advertiser.status.condition is Condition.OK)
        finally:
            await bluez.stop()


def test_a_bad_hwid_or_message_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="HWID"):
        BeaconAdvertiser(hwid=b"\x01", message=lambda: b"\x00")
    with pytest.raises(ValueError, match="device message"):
        BeaconAdvertiser(hwid=HWID, message=lambda: b"")
