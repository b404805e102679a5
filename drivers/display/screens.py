"""The customer-display contract: what the counter screen can show, as frozen dataclasses.

Owns the screen states other capabilities pass to `ctx.services["display"].show(...)`. Each
state is validated on construction, so a bad amount or an over-long URL fails at the caller
with a `ScreenError` naming the field, never later inside the renderer.

The dataclasses are frozen but accept positional arguments too, because the shared contract
was published with positional signatures (`PayScreen(180, url, token, expires_at)`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_AMOUNT_TWD",
    "MAX_QR_TEXT",
    "SCREEN_NAMES",
    "DisplayError",
    "FailedScreen",
    "IdleScreen",
    "JoinedScreen",
    "PaidScreen",
    "PayScreen",
    "Screen",
    "ScreenError",
    "WaitingScreen",
    "screen_name",
]

# LINE Pay's single-payment ceiling for a counter is far below this; the cap only keeps the
# amount inside the layout (9 digits with separators still fit the pay screen at 480x320).
MAX_AMOUNT_TWD: Final = 99_999_999
# A byte-mode QR at version 10 / EC Q holds 119 bytes; payment and binding URLs are ~40-120
# characters. 300 keeps even a long LINE Pay web URL (version 13 at M) scannable at 480x320.
MAX_QR_TEXT: Final = 300
_TOKEN = re.compile(r"^\d{12}\Z")


class DisplayError(Exception):
    """Root error of the display package."""


class ScreenError(DisplayError, ValueError):
    """A screen state that cannot be shown (the caller passed bad data)."""


def _amount(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScreenError(f"{field}: must be an integer number of NT$, got {value!r}")
    if not 1 <= value <= MAX_AMOUNT_TWD:
        raise ScreenError(f"{field}: must be from 1 to {MAX_AMOUNT_TWD}, got {value}")


def _qr_text(field: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ScreenError(f"{field}: must be a non-empty string, got {value!r}")
    if len(value.encode("utf-8")) > MAX_QR_TEXT:
        raise ScreenError(f"{field}: longer than {MAX_QR_TEXT} bytes; the QR would not scan from a phone")
    if any(ch.isspace() for ch in value):
        raise ScreenError(f"{field}: must not contain whitespace, got {value!r}")


def _text(field: str, value: object, *, limit: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ScreenError(f"{field}: must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise ScreenError(f"{field}: at most {limit} characters, got {len(value)}")


@dataclass(frozen=True)
class IdleScreen:
    """Between sales: the store name, "pay with LINE Pay", optionally a join-as-friend QR."""

    store_name: str
    friend_url: str | None = None

    def __post_init__(self) -> None:
        _text("store_name", self.store_name, limit=64)
        _qr_text("friend_url", self.friend_url, optional=True)


@dataclass(frozen=True)
class PayScreen:
    """The amount, the payment QR (EC M), the 12-digit access token and a countdown."""

    amount_twd: int
    qr_url: str
    access_token: str | None
    expires_at: float  # wall-clock epoch seconds

    def __post_init__(self) -> None:
        _amount("amount_twd", self.amount_twd)
        _qr_text("qr_url", self.qr_url, optional=False)
        if self.access_token is not None and (
            not isinstance(self.access_token, str) or not _TOKEN.match(self.access_token)
        ):
            raise ScreenError(f"access_token: must be 12 digits, got {self.access_token!r}")
        if isinstance(self.expires_at, bool) or not isinstance(self.expires_at, int | float):
            raise ScreenError(f"expires_at: must be epoch seconds, got {self.expires_at!r}")
        if not math.isfinite(self.expires_at) or self.expires_at <= 0:
            raise ScreenError(f"expires_at: must be a positive finite epoch, got {self.expires_at!r}")


@dataclass(frozen=True)
class WaitingScreen:
    """The cashier scanned the shopper's code; LINE Pay is confirming."""

    amount_twd: int

    def __post_init__(self) -> None:
        _amount("amount_twd", self.amount_twd)


@dataclass(frozen=True)
class PaidScreen:
    """Payment done; the membership-binding QR (EC Q) with the welcome-coupon offer."""

    amount_twd: int
    binding_url: str | None

    def __post_init__(self) -> None:
        _amount("amount_twd", self.amount_twd)
        _qr_text("binding_url", self.binding_url, optional=True)


@dataclass(frozen=True)
class FailedScreen:
    """The payment failed: the reason in plain words, and what to do next."""

    reason_zh: str
    reason_en: str

    def __post_init__(self) -> None:
        _text("reason_zh", self.reason_zh, limit=40)
        _text("reason_en", self.reason_en, limit=80)


@dataclass(frozen=True)
class JoinedScreen:
    """The shopper's binding message arrived: they are a member and the coupon is on its way."""

    amount_twd: int | None = None

    def __post_init__(self) -> None:
        if self.amount_twd is not None:
            _amount("amount_twd", self.amount_twd)


Screen = IdleScreen | PayScreen | WaitingScreen | PaidScreen | FailedScreen | JoinedScreen

SCREEN_NAMES: Final[dict[type[Screen], str]] = {
    IdleScreen: "idle",
    PayScreen: "pay",
    WaitingScreen: "waiting",
    PaidScreen: "paid",
    FailedScreen: "failed",
    JoinedScreen: "joined",
}


def screen_name(screen: Screen) -> str:
    """The short name used in logs, the CLI and the kiosk page ("pay", "paid", ...)."""
    try:
        return SCREEN_NAMES[type(screen)]
    except KeyError:
        raise ScreenError(f"not a screen state: {screen!r}") from None
