"""The customer-display screens a payment shows, mirroring the display contract field for field.

The payment flow describes what to show with these frozen dataclasses; the agent
(`agent.wiring.pos`) turns each into the display room's class of the same name, so the payment
code never imports display code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FailedScreen",
    "IdleScreen",
    "PaidScreen",
    "PayScreen",
    "Screen",
    "WaitingScreen",
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
