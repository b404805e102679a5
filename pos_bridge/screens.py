"""The customer-display screens a payment shows, mirroring the display contract field for field.

The payment flow describes what to show with these frozen dataclasses; `as_contract_screen()`
turns one into the display package's own class of the same name when that package is
installed (`drivers.display.screens`), so the payment code never imports display code and
still hands the running display exactly the contract type.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FailedScreen",
    "IdleScreen",
    "PaidScreen",
    "PayScreen",
    "Screen",
    "WaitingScreen",
    "as_contract_screen",
]


@dataclass(frozen=True, kw_only=True)
class IdleScreen:
    store_name: str
    friend_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class PayScreen:
    amount_twd: int
    qr_url: str
    access_token: str | None
    expires_at: float  # wall-clock epoch seconds


@dataclass(frozen=True, kw_only=True)
class WaitingScreen:
    amount_twd: int


@dataclass(frozen=True, kw_only=True)
class PaidScreen:
    amount_twd: int
    binding_url: str | None


@dataclass(frozen=True, kw_only=True)
class FailedScreen:
    reason_zh: str
    reason_en: str


Screen = IdleScreen | PayScreen | WaitingScreen | PaidScreen | FailedScreen


def as_contract_screen(screen: Screen) -> Any:
    """The display package's screen of the same name and fields, or `screen` itself without it."""
    try:
        module = importlib.import_module("drivers.display.screens")
    except ImportError:
        return screen
    cls = getattr(module, type(screen).__name__, None)
    if cls is None:
        return screen
    return cls(**{f.name: getattr(screen, f.name) for f in dataclasses.fields(screen)})
