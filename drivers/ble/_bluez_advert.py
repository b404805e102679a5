"""The `org.bluez.LEAdvertisement1` object the counter exports for BlueZ to read.

Imported only by `advertiser.py` once it starts (dbus-fast is a BlueZ-side dependency). BlueZ
reads every property with Properties.GetAll when the advert is registered and again on
PropertiesChanged (since 5.47), which is how the rotating device message changes without
re-registering. `Release()` is BlueZ saying it has already dropped the advert (adapter
removed, bluetoothd shutting down): the advertiser registers it again.
"""

# No `from __future__ import annotations`: dbus-fast reads D-Bus signatures from annotations.

from collections.abc import Callable
from typing import Annotated

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature, DBusStr, DBusUInt32
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

__all__ = ["ADVERT_INTERFACE", "Advertisement"]

ADVERT_INTERFACE = "org.bluez.LEAdvertisement1"

DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusServiceData = Annotated[dict[str, Variant], DBusSignature("a{sv}")]


class Advertisement(ServiceInterface):
    """A broadcaster advert: ServiceUUIDs [0xFE6F] and ServiceData {0xFE6F: frame}."""

    def __init__(
        self, *, service_uuid: str, frame: bytes, interval_ms: int, on_release: Callable[[], None]
    ) -> None:
        super().__init__(ADVERT_INTERFACE)
        self._service_uuid = service_uuid
        self._frame = frame
        self._interval_ms = interval_ms
        self._on_release = on_release

    @property
    def frame(self) -> bytes:
        return self._frame

    def update_frame(self, frame: bytes) -> None:
        """A new device message: tell BlueZ, which rebuilds the advertising data."""
        self._frame = frame
        self.emit_properties_changed({"ServiceData": self._service_data()})

    def _service_data(self) -> dict[str, Variant]:
        return {self._service_uuid: Variant("ay", self._frame)}

    @dbus_method()
    def Release(self) -> None:
        self._on_release()

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:
        return "broadcast"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> DBusStrList:
        return [self._service_uuid]

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> DBusServiceData:
        return self._service_data()

    @dbus_property(access=PropertyAccess.READ)
    def MinInterval(self) -> DBusUInt32:
        return self._interval_ms

    @dbus_property(access=PropertyAccess.READ)
    def MaxInterval(self) -> DBusUInt32:
        return self._interval_ms
