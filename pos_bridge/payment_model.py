"""The words of the payment state machine: a `Payment`, the events that reach it and the
commands it gives; frozen keyword-only dataclasses, validated on construction; no I/O.

`pos_bridge.payment_flow` holds the rules (`TRANSITIONS`, `handle`) over these words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from pos_bridge.screens import Screen

__all__ = [
    "NON_FINAL",
    "Begin",
    "CallConfirm",
    "CallPay",
    "CallRefund",
    "CallRequest",
    "Cancel",
    "CheckLedger",
    "Command",
    "Event",
    "Handler",
    "IllegalTransition",
    "KeyScanned",
    "LedgerStatus",
    "Method",
    "OutcomeUnknown",
    "PayAnswered",
    "Payment",
    "Policy",
    "PollRequest",
    "Refund",
    "RefundAnswered",
    "Rejected",
    "RequestAnswered",
    "RequestStatus",
    "Restarted",
    "Show",
    "State",
    "Step",
]


class State(StrEnum):
    CREATED = "created"  # journaled; LINE Pay not asked yet (or a QR request in flight)
    REQUESTED = "requested"  # QR shown, polling the request status
    AUTHORIZING = "authorizing"  # pay (scan) or confirm (QR) in flight: money may move
    UNKNOWN = "unknown"  # the outcome of a money-moving call is unknown: checking by order id
    PAID = "paid"
    REFUNDING = "refunding"  # a refund call in flight or its outcome unknown
    REFUNDED = "refunded"  # refunded in full
    FAILED = "failed"
    CANCELLED = "cancelled"


NON_FINAL = frozenset({State.CREATED, State.REQUESTED, State.AUTHORIZING, State.UNKNOWN, State.REFUNDING})


class Method(StrEnum):
    SCAN_CODE = "scan_code"  # the cashier scans the shopper's My Code (offline API)
    QR = "qr"  # the shopper scans the counter display (online API)


class IllegalTransition(Exception):
    """The event is not allowed in the payment's state (the till asked for something impossible)."""

    def __init__(self, state: State, event: Event, reason: str = "") -> None:
        super().__init__(reason or f"{type(event).__name__} is not allowed while the payment is {state}")
        self.state = state
        self.event = event
        self.reason = reason or str(self)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Timing of the flow, in seconds (derived from LINE's documented timeouts)."""

    poll_interval_s: float = 1.0  # request-check "at intervals of at least 1 s"
    check_interval_s: float = 3.0  # check by order id "every 3-5 s"...
    check_window_s: float = 20 * 60.0  # ...for up to 20 minutes (a payment's validity)...
    slow_check_interval_s: float = 30.0  # ...then less often: a network outage can outlast it
    pay_settle_s: float = 40.0  # pay read timeout: after it, LINE has finished or dropped the call
    refund_settle_s: float = 60.0  # refund read timeout (capture-class call)
    qr_lifetime_s: float = 20 * 60.0  # 0121 "cancelled or timed out (20 min)"

    def __post_init__(self) -> None:
        if self.poll_interval_s < 1.0:
            raise ValueError("poll_interval_s must be at least 1 s (LINE Pay's limit)")


@dataclass(frozen=True, kw_only=True)
class Payment:
    """One attempt to take one POS order's money: what the journal stores."""

    order_id: str  # the till's order id
    line_order_id: str  # the orderId sent to LINE Pay (order_id, or order_id.N for attempt N)
    method: Method
    amount: int
    currency: str
    product_name: str
    state: State
    created_at: float
    version: int = 0
    transaction_id: str | None = None
    payment_url: str | None = None
    access_token: str | None = None
    paid_amount: int = 0
    refunded_amount: int = 0
    refund_pending: int = 0
    refund_base: int = 0
    fail_after_refund: bool = False
    sent_at: float | None = None
    unknown_since: float | None = None
    error_code: str | None = None
    error_message: str | None = None

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError(f"amount must be positive, got {self.amount}")
        if not self.order_id or not self.line_order_id:
            raise ValueError("order ids must not be empty")


# ---------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True)
class Begin:
    one_time_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class KeyScanned:
    one_time_key: str


@dataclass(frozen=True, kw_only=True)
class RequestAnswered:
    transaction_id: str
    payment_url: str
    access_token: str | None


@dataclass(frozen=True, kw_only=True)
class RequestStatus:
    code: str  # 0000 waiting, 0110 approved, 0121 cancelled/expired, 0122 failed, 0123 done


@dataclass(frozen=True, kw_only=True)
class PayAnswered:
    transaction_id: str
    paid_amount: int


@dataclass(frozen=True, kw_only=True)
class Rejected:
    code: str
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class OutcomeUnknown:
    reason: str


@dataclass(frozen=True, kw_only=True)
class LedgerStatus:
    # COMPLETE | FAIL | REFUND | CANCEL (final, nothing charged) | AUTH_READY (authorised, not
    # complete yet: check again) | NOT_FOUND
    status: str
    transaction_id: str | None = None
    paid_amount: int = 0
    refunded_amount: int = 0


@dataclass(frozen=True, kw_only=True)
class RefundAnswered:
    pass


@dataclass(frozen=True, kw_only=True)
class Cancel:
    pass


@dataclass(frozen=True, kw_only=True)
class Refund:
    amount: int | None = None  # None = everything not yet refunded

    def __post_init__(self) -> None:
        if self.amount is not None and self.amount <= 0:
            raise ValueError(f"refund amount must be positive, got {self.amount}")


@dataclass(frozen=True, kw_only=True)
class Restarted:
    pass


Event = (
    Begin
    | KeyScanned
    | RequestAnswered
    | RequestStatus
    | PayAnswered
    | Rejected
    | OutcomeUnknown
    | LedgerStatus
    | RefundAnswered
    | Cancel
    | Refund
    | Restarted
)

# ---------------------------------------------------------------- commands


@dataclass(frozen=True, kw_only=True)
class Show:
    screen: Screen


@dataclass(frozen=True, kw_only=True)
class CallPay:
    one_time_key: str


@dataclass(frozen=True, kw_only=True)
class CallRequest:
    pass


@dataclass(frozen=True, kw_only=True)
class PollRequest:
    after_s: float


@dataclass(frozen=True, kw_only=True)
class CallConfirm:
    pass


@dataclass(frozen=True, kw_only=True)
class CheckLedger:
    after_s: float


@dataclass(frozen=True, kw_only=True)
class CallRefund:
    amount: int


Command = Show | CallPay | CallRequest | PollRequest | CallConfirm | CheckLedger | CallRefund


@dataclass(frozen=True, kw_only=True)
class Step:
    payment: Payment
    commands: tuple[Command, ...] = field(default_factory=tuple)


Handler = Callable[[Payment, Event, float, Policy], Step]
