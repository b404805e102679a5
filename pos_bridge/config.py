"""The payments room's config sections: `[pos]` (the till's API) and `[linepay]` (merchant credentials)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from base.config import Section, check_listen

__all__ = [
    "LinePayConfig",
    "POSConfig",
]


class POSConfig(Section):
    """The local HTTP API the till talks to."""

    listen: str = "127.0.0.1:8737"
    token: SecretStr = SecretStr("")
    max_amount_twd: Annotated[int, Field(gt=0)] = 200_000
    scanner: Literal["none", "evdev", "replay"] = "none"
    scanner_device: str = ""
    scanner_replay_file: Path | None = None

    _listen = field_validator("listen")(check_listen)

    @model_validator(mode="after")
    def _scanner_source(self) -> POSConfig:
        if self.scanner == "evdev" and not self.scanner_device:
            raise ValueError('scanner_device: required with scanner = "evdev" (a /dev/input/by-id/ path)')
        if self.scanner == "replay" and self.scanner_replay_file is None:
            raise ValueError('scanner_replay_file: required with scanner = "replay"')
        return self


class LinePayConfig(Section):
    """LINE Pay merchant credentials (offline v4 and online v3 APIs)."""

    mode: Literal["sandbox", "production"] = "sandbox"
    api_base: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")] | None = None
    channel_id: str = ""
    channel_secret: SecretStr = SecretStr("")
    # Sent as X-LINE-MerchantDeviceProfileId on every offline call; empty: the device id.
    merchant_device_profile_id: Annotated[str, Field(max_length=100)] = ""
    merchant_device_type: Annotated[str, Field(min_length=1, max_length=100)] = "POS"
    # Ask LINE Pay to add the Official Account as a friend on an offline (scan) payment. The
    # field is undocumented for offline v4, so it is off unless the merchant has checked it.
    add_friends_offline: bool = False
    fee_rate: Annotated[float, Field(ge=0, lt=1)] = 0.022

    @field_validator("channel_id")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"\d{10}", value):
            raise ValueError(f"must be 10 digits, got {value!r}")
        return value
