"""The cloud room's config sections: `[relay]`, the LINE webhook relay's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import Field, SecretStr, field_validator

from base.config import HWID, Section, check_listen
from base.mqtt import MQTTConfig

__all__ = [
    "RelayConfig",
    "RelaySettings",
]


class RelayConfig(Section):
    """The cloud webhook relay (`shopedge relay`), which runs in the merchant's cloud."""

    listen: str = "127.0.0.1:8740"
    beacon_stores: dict[str, str] = Field(default_factory=dict)
    fleet_topic: str = "shopedge/v1/fleet/line_event"
    dedupe_window_s: Annotated[float, Field(ge=60, le=7 * 24 * 3600)] = 24 * 3600
    dedupe_max_events: Annotated[int, Field(ge=1000, le=10_000_000)] = 200_000
    follow_window_s: Annotated[float, Field(ge=0, le=24 * 3600)] = 600
    # The relay's durable outbox (relay.db): accepted events wait here while the broker is away.
    state_dir: Path = Path("/var/lib/shopedge-relay")

    _listen = field_validator("listen")(check_listen)

    @field_validator("beacon_stores")
    @classmethod
    def _beacon_stores(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for hwid, target in value.items():
            if not HWID.match(hwid.lower()):
                raise ValueError(f"each HWID must be 10 hex digits, got {hwid!r}")
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}(/[A-Za-z0-9_-]{1,32})?", target):
                raise ValueError(f"{hwid}: must be STORE_ID or STORE_ID/DEVICE_ID, got {target!r}")
            out[hwid.lower()] = target
        return out

    @field_validator("fleet_topic")
    @classmethod
    def _fleet_topic(cls, value: str) -> str:
        if not value or any(ch in value for ch in "#+\x00") or value.startswith("$"):
            raise ValueError(f"must be an MQTT topic without wildcards, got {value!r}")
        return value


class _Line(Protocol):
    @property
    def channel_secret(self) -> SecretStr: ...


class _Timeouts(Protocol):
    @property
    def mqtt_connect(self) -> float: ...
    @property
    def relay_publish(self) -> float: ...


class RelaySettings(Protocol):
    """The sections the relay reads from its config file (`ShopEdgeConfig` satisfies it)."""

    @property
    def relay(self) -> RelayConfig: ...
    @property
    def mqtt(self) -> MQTTConfig: ...
    @property
    def line(self) -> _Line: ...
    @property
    def timeouts(self) -> _Timeouts: ...
