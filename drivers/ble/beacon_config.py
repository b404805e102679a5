"""The `[beacon]` config section: the counter advertising itself as the store's LINE Beacon."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = ["BeaconConfig"]

_HWID = re.compile(r"^[0-9a-f]{10}$")


class BeaconConfig(BaseModel):
    """`hwid`: the LINE Beacon HWID issued in LINE Official Account Manager (10 hex digits);
    `advertise`: the Pi broadcasts it as a LINE Simple Beacon (off unless turned on)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

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
