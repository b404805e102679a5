"""The ports of the membership room: what it reads from the device's config and context.

Membership never imports the agent. Its functions and components take a `MembershipContext`:
anything with these attributes, which `agent.context.AgentContext` (and its
`ShopEdgeConfig`) satisfy structurally. The sections membership owns are its own models
(`membership.config`); of the device's other sections it names only the keys it reads.
`services` is the agent's registry of running services; membership looks up `outbox`,
`screens`, `sale_lookup`, `downlink`, `settings` and `coupons` there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import SecretStr

from base.health import HealthBoard
from base.statedb import StateDB
from membership.config import BindingConfig, CampaignConfig, CouponsConfig, GreetingConfig, LineConfig

__all__ = ["DeviceIdentity", "MembershipContext", "MembershipSettings", "SettingsStore"]


class DeviceIdentity(Protocol):
    """Who this device is (`[device]`): every fact and conversion carries store and device."""

    @property
    def store_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def name(self) -> str: ...


class SettingsStore(Protocol):
    """`services["settings"]`: the device's small key/value settings (the agent's `settings`
    table); coupons keep the LINE coupon id created for each campaign there."""

    def get_setting_blocking(self, key: str) -> str | None: ...

    def put_setting_blocking(self, key: str, value: str) -> None: ...


class _Timeouts(Protocol):
    @property
    def line_api(self) -> float: ...


class _Storage(Protocol):
    @property
    def outbox_max_attempts(self) -> int: ...


class _Pos(Protocol):
    @property
    def token(self) -> SecretStr: ...


class _LinePay(Protocol):
    @property
    def fee_rate(self) -> float: ...


class _Beacon(Protocol):
    """`[beacon]` (the BLE driver's section): the HWID this counter advertises."""

    @property
    def hwid(self) -> str: ...


class MembershipSettings(Protocol):
    """The config membership reads (`agent.config.ShopEdgeConfig` satisfies it)."""

    @property
    def device(self) -> DeviceIdentity: ...
    @property
    def line(self) -> LineConfig: ...
    @property
    def binding(self) -> BindingConfig: ...
    @property
    def campaigns(self) -> list[CampaignConfig]: ...
    @property
    def coupons(self) -> CouponsConfig: ...
    @property
    def greetings(self) -> list[GreetingConfig]: ...
    @property
    def beacon(self) -> _Beacon: ...
    @property
    def timeouts(self) -> _Timeouts: ...
    @property
    def storage(self) -> _Storage: ...
    @property
    def pos(self) -> _Pos: ...
    @property
    def linepay(self) -> _LinePay: ...


class MembershipContext(Protocol):
    """The long-lived objects of the device process that membership uses."""

    @property
    def config(self) -> MembershipSettings: ...
    @property
    def db(self) -> StateDB: ...
    @property
    def health(self) -> HealthBoard: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def wall_clock(self) -> Callable[[], float]: ...
    @property
    def services(self) -> dict[str, Any]: ...
