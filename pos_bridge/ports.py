"""The ports of the payments room: what it needs from the rest of the device, as Protocols.

`pos_bridge` knows nothing of the display, the drivers, membership or the agent. It announces
what a payment shows through `DisplayPort` and its settling through `on_paid`; the binding URL
on the paid screen and the member phone hash come in as plain functions. The agent
(`agent.wiring.pos`) fills every port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from pos_bridge.config import LinePayConfig, POSConfig
from pos_bridge.screens import Screen

__all__ = [
    "BindingUrl",
    "DisplayPort",
    "LinePayTimeouts",
    "PaidHook",
    "PaymentSettings",
    "PhoneHasher",
]


class DisplayPort(Protocol):
    """Something that shows the customer a payment's screen (returns at once)."""

    async def show(self, screen: Screen) -> None: ...


class LinePayTimeouts(Protocol):
    """The `[timeouts]` this room reads (seconds; LINE's documented minimums)."""

    @property
    def linepay_connect(self) -> float: ...
    @property
    def linepay_pay(self) -> float: ...
    @property
    def linepay_request(self) -> float: ...
    @property
    def linepay_check(self) -> float: ...
    @property
    def linepay_capture(self) -> float: ...


class _Device(Protocol):
    @property
    def name(self) -> str: ...


class _Line(Protocol):
    @property
    def oa_basic_id(self) -> str: ...


class PaymentSettings(Protocol):
    """The config sections the payment service reads (`ShopEdgeConfig` satisfies it)."""

    @property
    def pos(self) -> POSConfig: ...
    @property
    def linepay(self) -> LinePayConfig: ...
    @property
    def timeouts(self) -> LinePayTimeouts: ...
    @property
    def device(self) -> _Device: ...
    @property
    def line(self) -> _Line: ...


# The order's binding URL for the paid screen, or None when none can be issued.
BindingUrl = Callable[[str], "str | None"]
# A member phone as the membership room records it; ValueError names a phone it cannot read.
PhoneHasher = Callable[[str], str]
# Called once when a payment is paid, with the binding URL the paid screen showed (if any).
PaidHook = Callable[..., Awaitable[None]]
