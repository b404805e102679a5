"""The emulator's ledger and rules: pure data and functions, no HTTP.

Owns what LINE Pay would decide for each call (return code, effect on the ledger), written from
/work/shared/reference/linepay.md. Where LINE does not document the code for a case the choice is
marked EMULATOR CHOICE; the client treats every non-"0000" code the same safe way anyway.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = ["Charge", "Fault", "LedgerError", "LinePayState", "OneTimeKey", "Reservation"]

_SPECIAL = frozenset({"short", "over", "slow", "cancel", "auth_ready"})
KEY_LIFETIME_S = 300.0  # "valid 5 minutes after the customer generates it"
RESERVATION_LIFETIME_S = 20 * 60.0  # 0121: cancelled or timed out (20 min)

FaultKind = Literal["delay", "slow", "timeout", "5xx", "drop", "short", "over", "cancel", "auth_ready"]
Endpoint = Literal[
    "pay",
    "check",
    "payments",
    "refund_offline",
    "request",
    "check_request",
    "confirm",
    "details",
    "refund_online",
    "any",
]


class LedgerError(Exception):
    """LINE Pay refuses: `code` is the returnCode to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


@dataclass(kw_only=True)
class Fault:
    """One injected fault, consumed by the next `count` matching calls.

    `delay` waits `seconds` before LINE sees the call; `timeout` applies the call then stalls
    `seconds` before answering (the client times out after the charge is made); `5xx` answers
    HTTP 500 and `drop` closes the connection, each after applying the call when `after_effect`
    (the dangerous case) or before it otherwise. `short` makes the next charge `amount` TWD
    smaller than requested (as if part were paid otherwise) and `over` `amount` TWD larger, to
    exercise the Σ payInfo check both ways.
    `cancel` (pay only) has LINE cancel the order instead of charging it: the pay answers 1199
    and the offline check answers status `CANCEL` (final, nothing charged), as LINE's sandbox
    does. `auth_ready` (pay only) charges, but the check answers `AUTH_READY` (authorised,
    not yet complete: keep polling) for `seconds` before `COMPLETE`. Combine either with a
    `timeout` fault to make the client find out by checking.
    `slow` (pay only) keeps the order "in process" for `seconds` before charging: meanwhile a
    check answers 1145 and a repeated pay 1198.
    """

    endpoint: Endpoint
    kind: FaultKind
    seconds: float = 0.0
    after_effect: bool = True
    count: int = 1
    amount: int = 0


@dataclass(kw_only=True)
class OneTimeKey:
    key: str
    expires_at: float
    balance: int
    used: bool = False


@dataclass(kw_only=True)
class Charge:
    """Money that moved: one per order id, ever (a repeated order id answers 1172)."""

    order_id: str
    transaction_id: str
    amount: int
    currency: str
    method: Literal["offline", "online"]
    created_at: float
    refunds: list[tuple[str, int]] = field(default_factory=list)

    @property
    def refunded(self) -> int:
        return sum(amount for _, amount in self.refunds)

    @property
    def status(self) -> str:
        return "REFUND" if self.refunded >= self.amount else "COMPLETE"

    def as_info(self) -> dict[str, Any]:
        return {
            "transactionId": int(self.transaction_id),
            "orderId": self.order_id,
            "transactionDate": "2026-01-01T00:00:00Z",
            "payInfo": [{"method": "BALANCE", "amount": self.amount}],
            "refundList": [
                {"refundTransactionId": int(tx), "refundAmount": -amount} for tx, amount in self.refunds
            ],
        }


@dataclass(kw_only=True)
class Reservation:
    """An online request waiting for the shopper (pending -> approved -> confirmed)."""

    transaction_id: str
    order_id: str
    amount: int
    currency: str
    created_at: float
    access_token: str
    state: Literal["pending", "approved", "confirmed", "cancelled", "failed"] = "pending"


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise LedgerError("2101", f"{name} must be a number")
    try:
        if value != int(value):
            raise LedgerError("1124", f"{name} has a decimal scale TWD does not allow")
    except (InvalidOperation, ValueError):
        raise LedgerError("2101", f"{name} is not a number") from None
    if int(value) <= 0:
        raise LedgerError("2101", f"{name} must be positive")
    return int(value)


class LinePayState:
    """Everything the emulator remembers; every public method is one LINE Pay decision."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._tx = itertools.count(2026_0000_0000_0000_000 + self._rng.randint(0, 10**9))
        self.keys: dict[str, OneTimeKey] = {}
        self.charges: dict[str, Charge] = {}
        self.reservations: dict[str, Reservation] = {}
        self.processing: set[str] = set()
        self.nonces: set[str] = set()
        self.faults: list[Fault] = []
        # Audit trail for tests: every pay/confirm call that reached the ledger, and every refund.
        self.charge_attempts: list[str] = []
        self.refund_log: list[tuple[str, int]] = []
        self.cancelled: set[str] = set()  # offline order ids LINE cancelled (check: CANCEL)
        self.auth_ready_until: dict[str, float] = {}  # order id -> when AUTH_READY turns COMPLETE
        # (path, {header: value}) of every authenticated call's X-LINE-MerchantDevice* headers
        self.device_headers: list[tuple[str, dict[str, str]]] = []
        self.bodies: list[tuple[str, dict[str, Any]]] = []  # (path, body) of every authenticated POST

    def next_tx(self) -> str:
        return str(next(self._tx))

    # --------------------------------------------------------------- faults

    def take_fault(self, endpoint: str) -> Fault | None:
        for fault in self.faults:
            if fault.kind not in _SPECIAL and fault.endpoint in (endpoint, "any"):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _shortfall(self, endpoint: str) -> int:
        fault = self.take_special("short", endpoint)
        return fault.amount if fault is not None else 0

    def _overcharge(self, endpoint: str) -> int:
        fault = self.take_special("over", endpoint)
        return fault.amount if fault is not None else 0

    def take_special(self, kind: str, endpoint: str) -> Fault | None:
        """Consume a fault of `_SPECIAL` (they change how LINE processes, not the transport)."""
        for fault in self.faults:
            if fault.kind == kind and fault.endpoint in (endpoint, "any"):
                self.faults.remove(fault)
                return fault
        return None

    # --------------------------------------------------------------- shopper side

    def issue_key(self, now: float, *, balance: int = 1_000_000, lifetime: float = KEY_LIFETIME_S) -> str:
        """The shopper opens "My Code": an 18-digit one-time key (Taiwan)."""
        key = _digits(self._rng, 18)
        self.keys[key] = OneTimeKey(key=key, expires_at=now + lifetime, balance=balance)
        return key

    def approve(self, transaction_id: str, now: float, *, ok: bool = True) -> None:
        """The shopper scans the counter QR and approves (or the payment fails in the app)."""
        reservation = self.reservations.get(transaction_id)
        if reservation is None:
            raise LedgerError("1150", "no such transaction")
        if reservation.state != "pending" or now - reservation.created_at > RESERVATION_LIFETIME_S:
            raise LedgerError("1180", f"reservation is {reservation.state}")
        reservation.state = "approved" if ok else "failed"

    # --------------------------------------------------------------- offline v4

    def validate_pay(self, body: dict[str, Any]) -> tuple[str, int, str, str]:
        order_id = body.get("orderId")
        key = body.get("oneTimeKey")
        currency = body.get("currency")
        if not isinstance(order_id, str) or not 0 < len(order_id) <= 100:
            raise LedgerError("2101", "orderId is required (1-100 characters)")
        if not isinstance(key, str) or len(key) != 18:
            raise LedgerError("2101", "oneTimeKey must be 18 characters (Taiwan)")
        amount = _positive_int(body.get("amount"), "amount")
        if currency != "TWD":
            raise LedgerError("1178", f"currency {currency!r} is not supported by this merchant")
        self._check_packages(body, amount)
        if order_id in self.charges:
            raise LedgerError("1172", "orderId already used")
        if order_id in self.processing:
            raise LedgerError("1198", "request in process")
        return order_id, amount, currency, key

    def pay(self, order_id: str, amount: int, currency: str, key: str, now: float) -> Charge:
        self.charge_attempts.append(order_id)
        if order_id in self.charges or order_id in self.cancelled:
            raise LedgerError("1172", "orderId already used")
        if self.take_special("cancel", "pay") is not None:
            self.cancelled.add(order_id)
            raise LedgerError("1199", "internal error: the payment was cancelled")  # EMULATOR CHOICE
        entry = self.keys.get(key)
        if entry is None:
            raise LedgerError("1101", "not a LINE Pay member (unknown one-time key)")  # EMULATOR CHOICE
        if entry.used or now > entry.expires_at:
            raise LedgerError("1180", "one-time key expired")
        if entry.balance < amount:
            raise LedgerError("1142", "insufficient balance")
        entry.used = True
        entry.balance -= amount
        charge = Charge(
            order_id=order_id,
            transaction_id=self.next_tx(),
            amount=amount - self._shortfall("pay") + self._overcharge("pay"),
            currency=currency,
            method="offline",
            created_at=now,
        )
        self.charges[order_id] = charge
        ready = self.take_special("auth_ready", "pay")
        if ready is not None:
            self.auth_ready_until[order_id] = now + ready.seconds
        return charge

    def check(self, order_id: str, now: float = 0.0) -> dict[str, Any]:
        if order_id in self.cancelled:
            return {"status": "CANCEL"}
        charge = self.charges.get(order_id)
        if charge is not None and now < self.auth_ready_until.get(order_id, 0.0):
            return {"status": "AUTH_READY", "transactionId": int(charge.transaction_id)}
        if charge is None or charge.method != "offline":
            if order_id in self.processing:
                raise LedgerError("1145", "payment in process")
            raise LedgerError("1150", "no payment history")
        return {"status": charge.status, "transactionId": int(charge.transaction_id)}

    def payments(
        self, *, order_id: str | None, transaction_id: str | None, method: str
    ) -> list[dict[str, Any]]:
        found = [
            c
            for c in self.charges.values()
            if c.method == method
            and (order_id is None or c.order_id == order_id)
            and (transaction_id is None or c.transaction_id == transaction_id)
        ]
        if not found:
            raise LedgerError("1150", "no payment history")
        return [c.as_info() for c in found]

    def refund(self, charge: Charge, body: dict[str, Any]) -> dict[str, Any]:
        if charge.status == "REFUND":
            raise LedgerError("1165", "already refunded")
        remaining = charge.amount - charge.refunded
        raw = body.get("refundAmount")
        amount = remaining if raw is None else _positive_int(raw, "refundAmount")
        if amount > remaining:
            raise LedgerError("1164", "refund amount exceeds the remaining amount")
        refund_tx = self.next_tx()
        charge.refunds.append((refund_tx, amount))
        self.refund_log.append((charge.order_id, amount))
        return {"refundTransactionId": int(refund_tx), "refundTransactionDate": "2026-01-01T00:00:00Z"}

    def offline_charge(self, order_id: str) -> Charge:
        charge = self.charges.get(order_id)
        if charge is None or charge.method != "offline":
            raise LedgerError("1150", "no payment history")
        return charge

    # --------------------------------------------------------------- online v3

    def request(self, body: dict[str, Any], now: float) -> Reservation:
        order_id = body.get("orderId")
        if not isinstance(order_id, str) or not 0 < len(order_id) <= 100:
            raise LedgerError("2101", "orderId is required (1-100 characters)")
        amount = _positive_int(body.get("amount"), "amount")
        if body.get("currency") != "TWD":
            raise LedgerError("1178", "currency not supported")
        self._check_packages(body, amount)
        redirect = body.get("redirectUrls")
        if not isinstance(redirect, dict) or not isinstance(redirect.get("confirmUrl"), str):
            raise LedgerError("2101", "redirectUrls.confirmUrl is required")
        if order_id in self.charges:
            raise LedgerError("1172", "orderId already used")
        reservation = Reservation(
            transaction_id=self.next_tx(),
            order_id=order_id,
            amount=amount,
            currency="TWD",
            created_at=now,
            access_token=_digits(self._rng, 12),
        )
        self.reservations[reservation.transaction_id] = reservation
        return reservation

    def _reservation(self, transaction_id: str, now: float) -> Reservation:
        reservation = self.reservations.get(transaction_id)
        if reservation is None:
            raise LedgerError("1150", "no such transaction")
        if (
            reservation.state in ("pending", "approved")
            and now - reservation.created_at > RESERVATION_LIFETIME_S
        ):
            reservation.state = "cancelled"
        return reservation

    def check_request(self, transaction_id: str, now: float) -> str:
        reservation = self._reservation(transaction_id, now)
        return {
            "pending": "0000",
            "approved": "0110",
            "cancelled": "0121",
            "failed": "0122",
            "confirmed": "0123",
        }[reservation.state]

    def confirm(self, transaction_id: str, body: dict[str, Any], now: float) -> Charge:
        reservation = self._reservation(transaction_id, now)
        self.charge_attempts.append(reservation.order_id)
        if reservation.state == "confirmed" or reservation.order_id in self.charges:
            raise LedgerError("1172", "transaction already confirmed")
        if reservation.state == "cancelled":
            raise LedgerError("1180", "payment expired")
        if reservation.state != "approved":
            raise LedgerError("1159", "the shopper has not approved this request")  # EMULATOR CHOICE
        amount = _positive_int(body.get("amount"), "amount")
        if amount != reservation.amount or body.get("currency") != reservation.currency:
            raise LedgerError("2101", "amount or currency differs from the request")  # EMULATOR CHOICE
        reservation.state = "confirmed"
        charge = Charge(
            order_id=reservation.order_id,
            transaction_id=transaction_id,
            amount=amount - self._shortfall("confirm"),
            currency=reservation.currency,
            method="online",
            created_at=now,
        )
        self.charges[reservation.order_id] = charge
        return charge

    def online_charge(self, transaction_id: str) -> Charge:
        for charge in self.charges.values():
            if charge.transaction_id == transaction_id and charge.method == "online":
                return charge
        raise LedgerError("1150", "no payment history")

    # --------------------------------------------------------------- shared

    @staticmethod
    def _check_packages(body: dict[str, Any], amount: int) -> None:
        packages = body.get("packages")
        if not isinstance(packages, list) or not packages:
            raise LedgerError("2101", "packages is required")
        total = Decimal(0)
        for package in packages:
            if not isinstance(package, dict):
                raise LedgerError("2101", "packages[] must be objects")
            total += Decimal(str(package.get("amount", 0)))
        if total != amount:
            raise LedgerError("2101", "amount must equal the sum of packages[].amount")

    def snapshot(self) -> dict[str, Any]:
        """The ledger as JSON, for tests and the control API."""
        return {
            "charges": {
                oid: {
                    "transactionId": c.transaction_id,
                    "amount": c.amount,
                    "method": c.method,
                    "refunded": c.refunded,
                    "status": c.status,
                }
                for oid, c in self.charges.items()
            },
            "charge_attempts": list(self.charge_attempts),
            "refunds": [[oid, amount] for oid, amount in self.refund_log],
            "reservations": {
                tx: {
                    "orderId": r.order_id,
                    "amount": r.amount,
                    "state": r.state,
                    "accessToken": r.access_token,
                }
                for tx, r in self.reservations.items()
            },
        }
