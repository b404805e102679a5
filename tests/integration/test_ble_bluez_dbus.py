"""BlueZAdapterControl against a real D-Bus daemon (a private bus) serving a stand-in org.bluez
Adapter1 object: the recovery ladder's StopDiscovery and power cycle as they go over the wire."""

# No `from __future__ import annotations`: dbus-fast reads D-Bus signatures from annotations.

from collections.abc import AsyncIterator, Iterator

import pytest
from dbus_fast.aio import MessageBus

from drivers.ble.scanner import BlueZAdapterControl
from tests.integration.fake_bluez import HAVE_DBUS, FakeAdapter, private_bus

pytestmark = pytest.mark.skipif(not HAVE_DBUS, reason="needs dbus-daemon")


@pytest.fixture
def bus_address() -> Iterator[str]:
    with private_bus() as address:
        yield address


@pytest.fixture
async def adapter(bus_address: str) -> AsyncIterator[FakeAdapter]:
    bus = await MessageBus(bus_address=bus_address).connect()
    fake = FakeAdapter()
    bus.export("/org/bluez/hci0", fake)
    await bus.request_name("org.bluez")
    try:
        yield fake
    finally:
        bus.disconnect()


async def test_stop_discovery_goes_to_bluez(adapter: FakeAdapter, bus_address: str) -> None:
    adapter.discovering = True
    await BlueZAdapterControl("hci0", bus_address=bus_address).stop_discovery()
    assert adapter.calls == ["StopDiscovery"]
    assert not adapter.discovering


async def test_a_bluez_error_is_raised_with_its_name(adapter: FakeAdapter, bus_address: str) -> None:
    with pytest.raises(RuntimeError, match=r"org\.bluez\.Error\.Failed"):
        await BlueZAdapterControl("hci0", bus_address=bus_address).stop_discovery()


async def test_power_cycle_turns_the_adapter_off_then_on(adapter: FakeAdapter, bus_address: str) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    await BlueZAdapterControl("hci0", sleep, bus_address=bus_address).power_cycle()
    assert adapter.calls == ["Powered=False", "Powered=True"]
    assert slept == [1.0]


async def test_a_missing_adapter_object_is_an_error_not_a_hang(
    adapter: FakeAdapter, bus_address: str
) -> None:
    with pytest.raises(RuntimeError, match=r"UnknownObject|UnknownMethod|UnknownInterface"):
        await BlueZAdapterControl("hci7", bus_address=bus_address).stop_discovery()
