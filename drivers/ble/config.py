"""The BLE driver's config sections: `[ble]` (scanning), `[presence]` (the engine's thresholds) and
`[beacon]` (the counter advertising itself as the store's LINE Beacon).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from drivers._config import Section

__all__ = [
    "BLEConfig",
    "BeaconConfig",
    "PresenceConfig",
]


_HWID = re.compile(r"^[0-9a-f]{10}\Z")


class BLEConfig(Section):
    """Bluetooth LE scanning."""

    enabled: bool = True
    driver: Literal["bleak", "replay"] = "bleak"
    adapter: Annotated[str, Field(pattern=r"^hci\d{1,2}$")] = "hci0"
    scanning_mode: Literal["active", "passive"] = "active"
    replay_file: Path | None = None
    replay_speed: Annotated[float, Field(gt=0, le=1000)] = 1.0
    replay_loop: bool = True
    store_beacon_hwids: list[str] = Field(default_factory=list)
    beacon_silent_after_s: Annotated[float, Field(gt=0)] = 300.0

    @field_validator("store_beacon_hwids")
    @classmethod
    def _hwids(cls, value: list[str]) -> list[str]:
        out = []
        for hwid in value:
            hwid = hwid.lower()
            if not _HWID.match(hwid):
                raise ValueError(f"each HWID must be 10 hex digits, got {hwid!r}")
            out.append(hwid)
        return out


class PresenceConfig(Section):
    """Presence engine thresholds (RSSI in dBm, times in seconds)."""

    enter_rssi: Annotated[int, Field(ge=-127, le=0)] = -75
    exit_rssi: Annotated[int, Field(ge=-127, le=0)] = -85
    enter_sightings: Annotated[int, Field(ge=1, le=100)] = 3
    away_after_s: Annotated[float, Field(gt=0)] = 30.0
    stay_interval_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _hysteresis(self) -> PresenceConfig:
        if self.exit_rssi > self.enter_rssi:
            raise ValueError("exit_rssi must be at or below enter_rssi (hysteresis)")
        return self


class BeaconConfig(Section):
    """`hwid`: the LINE Beacon HWID issued in LINE Official Account Manager (10 hex digits);
    `advertise`: the Pi broadcasts it as a LINE Simple Beacon (off unless turned on)."""

    hwid: str = ""
    advertise: bool = False

    @field_validator("hwid")
    @classmethod
    def _hwid(cls, value: str) -> str:
        value = value.lower()
        if value and not _HWID.match(value):
            raise ValueError(f"must be the 10 hex digits LINE Official Account Manager issued, got {value!r}")
        return value

    @model_validator(mode="after")
    def _advertise_needs_hwid(self) -> BeaconConfig:
        if self.advertise and not self.hwid:
            raise ValueError(
                "hwid: required with advertise = true (register one in LINE Official Account Manager)"
            )
        return self
