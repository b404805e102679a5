"""A stand-in bluetoothd on a private dbus-daemon: org.bluez with an Adapter1 and an
LEAdvertisingManager1 at /org/bluez/hci0, behaving as BlueZ's src/advertising.c does where the
counter depends on it.

- RegisterAdvertisement(o, a{sv}) reads the caller's advert object with Properties.GetAll
  (on the caller's unique name, as bluetoothd does) before answering, refuses a second
  registration of the same object (AlreadyExists) and, when told to, refuses with
  NotPermitted (no free instance);
- it follows the advert's PropertiesChanged, as BlueZ >= 5.47 refreshes the advert;
- UnregisterAdvertisement(o) drops it;
- `stop()` is bluetoothd exiting: its bus name goes away and every advert with it (a new
  `FakeBluez` starts with none, like bluetoothd's "Reset existing instances");
- `release_all()` is an adapter reset: BlueZ calls Release() on each advert and forgets it.
"""

# No `from __future__ import annotations`: dbus-fast reads D-Bus signatures from annotations.

import asyncio
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import DBusError, Message, MessageType, NameFlag, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

HAVE_DBUS = shutil.which("dbus-daemon") is not None
MANAGER = "org.bluez.LEAdvertisingManager1"
ADVERT = "org.bluez.LEAdvertisement1"


@contextmanager
def private_bus() -> Iterator[str]:
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


class FakeAdapter(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.bluez.Adapter1")
        self.calls: list[str] = []
        self.discovering = False
        self._powered = True

    @dbus_method()
    def StopDiscovery(self):  # type: ignore[no-untyped-def]
        self.calls.append("StopDiscovery")
        if not self.discovering:
            raise DBusError("org.bluez.Error.Failed", "No discovery started")
        self.discovering = False

    @dbus_property()
    def Powered(self) -> "b":  # type: ignore[name-defined]  # noqa: F821
        return self._powered

    @Powered.setter
    def Powered(self, value: "b"):  # type: ignore[name-defined, no-untyped-def]  # noqa: F821
        self.calls.append(f"Powered={value}")
        self._powered = value


def _plain(value: Any) -> Any:
    if isinstance(value, Variant):
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class Registered:
    owner: str
    path: str
    properties: dict[str, Any]
    updates: int = 0

    @property
    def frame(self) -> bytes:
        return bytes(self.properties["ServiceData"]["fe6f"])


@dataclass
class FakeBluez:
    address: str
    adapter_path: str = "/org/bluez/hci0"
    refuse: list[str] = field(default_factory=list)  # D-Bus error names for the next registrations
    adverts: dict[tuple[str, str], Registered] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    bus: MessageBus | None = None
    adapter: FakeAdapter = field(default_factory=FakeAdapter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set["asyncio.Task[None]"] = field(default_factory=set)
    adapter_present: bool = True

    async def start(self, *, replaceable: bool = False, replace: bool = False) -> "FakeBluez":
        """Own org.bluez; `replace` takes it from a `replaceable` one in a single step."""
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.export(self.adapter_path, self.adapter)
        self.bus.add_message_handler(self._handle)
        flags = NameFlag.NONE
        if replaceable:
            flags |= NameFlag.ALLOW_REPLACEMENT
        if replace:
            flags |= NameFlag.REPLACE_EXISTING
        await self.bus.request_name("org.bluez", flags)
        return self

    async def stop(self) -> None:
        """bluetoothd exits: the name goes and every advert with it."""
        self.adverts.clear()
        if self.bus is not None:
            self.bus.disconnect()
            await self.bus.wait_for_disconnect()
        self.bus = None

    async def unplug(self) -> None:
        """The adapter goes away (USB dongle pulled): InterfacesRemoved, adverts gone, no manager."""
        assert self.bus is not None
        self.adapter_present = False
        self.adverts.clear()
        self.bus.send(
            Message.new_signal(
                "/",
                "org.freedesktop.DBus.ObjectManager",
                "InterfacesRemoved",
                "oas",
                [self.adapter_path, ["org.bluez.Adapter1", MANAGER]],
            )
        )
        self.log.append("unplugged")
        self._notify()

    async def release_all(self) -> None:
        """An adapter reset: Release() on each advert, then forget them."""
        assert self.bus is not None
        for (owner, path), _ in list(self.adverts.items()):
            await self.bus.call(Message(destination=owner, path=path, interface=ADVERT, member="Release"))
        self.adverts.clear()
        self.log.append("released")
        self._notify()

    def only(self) -> Registered:
        assert len(self.adverts) == 1, self.adverts
        return next(iter(self.adverts.values()))

    async def wait_for(self, predicate: Any, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def _notify(self) -> None:
        self.changed.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _handle(self, msg: Message) -> Any:
        if msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged":
            advert = self.adverts.get((str(msg.sender), str(msg.path)))
            if advert is not None and msg.body[0] == ADVERT:
                advert.properties.update(_plain(msg.body[1]))
                advert.updates += 1
                self.log.append("changed")
                self._notify()
            return None
        if msg.message_type != MessageType.METHOD_CALL or msg.interface != MANAGER:
            return None
        if msg.path != self.adapter_path or not self.adapter_present:
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownObject", "no such adapter")
        if msg.member == "RegisterAdvertisement":
            self._spawn(self._register(msg))
            return True
        if msg.member == "UnregisterAdvertisement":
            key = (str(msg.sender), str(msg.body[0]))
            if self.adverts.pop(key, None) is None:
                return Message.new_error(msg, "org.bluez.Error.DoesNotExist", "Advertisement not registered")
            self.log.append("unregistered")
            self._notify()
            return Message.new_method_return(msg)
        return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", str(msg.member))

    async def _register(self, msg: Message) -> None:
        assert self.bus is not None
        path = str(msg.body[0])
        key = (str(msg.sender), path)
        if self.refuse:
            error = self.refuse.pop(0)
            self.log.append(f"refused {error}")
            self.bus.send(Message.new_error(msg, error, "refused by the fake"))
            self._notify()
            return
        if key in self.adverts:
            self.bus.send(Message.new_error(msg, "org.bluez.Error.AlreadyExists", "Already exists"))
            return
        reply = await self.bus.call(
            Message(
                destination=str(msg.sender),
                path=path,
                interface="org.freedesktop.DBus.Properties",
                member="GetAll",
                signature="s",
                body=[ADVERT],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR or reply.body[0].get(
            "Type", Variant("s", "")
        ).value not in (
            "broadcast",
            "peripheral",
        ):
            self.bus.send(Message.new_error(msg, "org.bluez.Error.InvalidArguments", "bad advert"))
            return
        await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[
                    f"type='signal',sender='{msg.sender}',path='{path}',"
                    "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"
                ],
            )
        )
        self.adverts[key] = Registered(owner=str(msg.sender), path=path, properties=_plain(reply.body[0]))
        self.log.append("registered")
        self.bus.send(Message.new_method_return(msg))
        self._notify()
