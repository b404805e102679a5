"""The payment service: the imperative shell around `payment_flow`.

Owns carrying out commands: it journals every new payment state before performing what that
state implies, calls LINE Pay, feeds each answer back to the state machine as an event, shows
screens on the injected display and wakes long-polling tills. One driver task per payment with
work pending runs in the service's TaskGroup; a command is tagged with the payment version that
produced it and dropped if the payment has moved on since (e.g. a status poll after the till
cancelled).

A journal write that SQLite refuses (a full disk) leaves the payment where its last durable
state put it; the service remembers that storage failed and re-reconciles every payment that
has no driver, with backoff, until the journal takes writes again: a sale LINE Pay charged
while the disk was full becomes paid as soon as there is space, without a restart.

Errors: `PaymentError` is the root; `TillError` subclasses name a request the till got wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from base.backoff import Backoff
from pos_bridge.journal import DuplicateOrder, IdempotencyScope, Journal, JournalWriteError, Remembered
from pos_bridge.linepay import LinePayClient, LinePayOutcomeUnknown, LinePayRejected
from pos_bridge.payment_flow import (
    NON_FINAL,
    Begin,
    CallConfirm,
    CallPay,
    CallRefund,
    CallRequest,
    Cancel,
    CheckLedger,
    Command,
    Event,
    IllegalTransition,
    KeyScanned,
    LedgerStatus,
    Method,
    OutcomeUnknown,
    PayAnswered,
    Payment,
    Policy,
    PollRequest,
    Refund,
    RefundAnswered,
    Rejected,
    RequestAnswered,
    RequestStatus,
    Restarted,
    Show,
    State,
    handle,
)
from pos_bridge.ports import BindingUrl, DisplayPort, PaymentSettings, PhoneHasher
from pos_bridge.screens import IdleScreen, PaidScreen, Screen

__all__ = [
    "DisplayPort",
    "DuplicateOrderError",
    "IdempotencyConflictError",
    "IllegalRequest",
    "NewPayment",
    "PaymentError",
    "PaymentService",
    "TillError",
    "UnknownOrder",
]

log = logging.getLogger(__name__)


class PaymentError(Exception):
    """Root of the payment service's errors."""


class TillError(PaymentError):
    """The till asked for something that cannot be done; `code` goes into the API error body."""

    code = "invalid_request"
    status = 400


class UnknownOrder(TillError):
    code = "unknown_order"
    status = 404


class DuplicateOrderError(TillError):
    code = "duplicate_order"
    status = 409


class IdempotencyConflictError(TillError):
    code = "idempotency_conflict"
    status = 409


class IllegalRequest(TillError):
    code = "conflict"
    status = 409


@dataclass(frozen=True, kw_only=True)
class NewPayment:
    """A validated payment request from the till."""

    order_id: str
    amount: int
    currency: str
    product_name: str
    method: Method
    one_time_key: str | None = None
    member_phone: str | None = None

    def fingerprint(self) -> str:
        """Hash of the request body, to tell a retried request from a different one (Idempotency-Key)."""
        body = {
            "order_id": self.order_id,
            "amount": self.amount,
            "currency": self.currency,
            "product_name": self.product_name,
            "method": str(self.method),
            "one_time_key": self.one_time_key,
            "member_phone": self.member_phone,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


STATUS_MESSAGES: dict[State, str] = {
    State.CREATED: "waiting for the payment to start (scan the shopper's code)",
    State.REQUESTED: "QR shown: waiting for the shopper to pay",
    State.AUTHORIZING: "LINE Pay is authorizing the payment",
    State.UNKNOWN: "confirming payment, do not charge again",
    State.PAID: "paid",
    State.REFUNDING: "refund in progress",
    State.REFUNDED: "refunded",
    State.FAILED: "payment failed",
    State.CANCELLED: "cancelled",
}


class PaymentService:
    """Takes payments for the till; `run()` is the long-lived part (reconcile, then drive)."""

    def __init__(
        self,
        *,
        config: PaymentSettings,
        journal: Journal,
        client: LinePayClient,
        display: Callable[[], DisplayPort | None],
        binding_url: BindingUrl | None = None,
        phone_hash: PhoneHasher | None = None,
        on_paid: Callable[[Payment, str | None], Awaitable[None]] | None = None,
        wall_clock: Callable[[], float] = time.time,
        policy: Policy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._journal = journal
        self._client = client
        self._display = display
        self._binding_url = binding_url
        self._phone_hasher = phone_hash
        self._on_paid = on_paid
        self._wall = wall_clock
        self._policy = policy or Policy(
            pay_settle_s=config.timeouts.linepay_connect + config.timeouts.linepay_pay,
            refund_settle_s=config.timeouts.linepay_connect + config.timeouts.linepay_capture,
        )
        self._sleep = sleep
        self._cache: dict[str, Payment] = {}  # line_order_id -> latest journaled payment
        # Weak: a lock lives while someone holds or awaits it, not one per sale for months.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._pending: dict[str, tuple[Command, int]] = {}
        self._drivers: set[str] = set()
        self._changed: dict[str, asyncio.Event] = {}
        self._create_lock = asyncio.Lock()
        self._storage_failed = asyncio.Event()  # a journal write failed; reconcile once writes work
        self._group: asyncio.TaskGroup | None = None
        self.ready = asyncio.Event()
        # LINE Pay's addFriends idList takes the Official Account's basic id with its "@"
        # (`line.oa_basic_id` is stored without it).
        self.add_friend_ids = [f"@{config.line.oa_basic_id}"] if config.line.oa_basic_id else []

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Reconcile every unfinished payment, then drive payments until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self.reconcile()
                self.ready.set()
                await self._recover_after_storage_failures()
        finally:
            self._group = None
            self.ready.clear()
            self._drivers.clear()
            self._pending.clear()

    async def reconcile(self, *, idle_only: bool = False) -> int:
        """Feed `Restarted` to every non-final payment (before any new work); returns how many.

        With `idle_only`, only payments no driver task is working on (after a storage failure,
        the ones whose driver stopped because the journal refused a write).
        """
        sent = await self._journal.flush_outbox()
        unfinished = await self._journal.non_final()
        if idle_only:
            unfinished = [
                p
                for p in unfinished
                if p.line_order_id not in self._drivers and p.line_order_id not in self._pending
            ]
        for payment in unfinished:
            self._cache[payment.line_order_id] = self._cached(payment)
            try:
                await self._apply(payment.line_order_id, Restarted())
            except JournalWriteError:
                continue  # `_apply` flagged the failure: retried once the journal takes writes
        log.info("payments reconciled", extra={"unfinished": len(unfinished), "outbox_repaired": sent})
        return len(unfinished)

    async def _recover_after_storage_failures(self) -> None:
        """Each time a journal write fails, re-reconcile idle payments (with backoff) until one works."""
        backoff = Backoff(base=1.0, cap=30.0)
        while True:
            await self._storage_failed.wait()
            await self._sleep(backoff.next_delay())
            self._storage_failed.clear()
            try:
                await self.reconcile(idle_only=True)
            except Exception:
                log.exception("reconcile after a storage failure failed; trying again")
                self._storage_failed.set()
                continue
            if not self._storage_failed.is_set():
                backoff.reset()

    # ------------------------------------------------------------ till requests

    async def start_payment(
        self, request: NewPayment, *, idempotency_key: str | None = None
    ) -> tuple[Payment, bool]:
        """Journal and start a payment; returns it and whether it is new (False: a replayed request)."""
        fingerprint = request.fingerprint()
        async with self._create_lock:
            if idempotency_key is not None:
                seen = await self._journal.by_idempotency_key(IdempotencyScope.PAYMENT, idempotency_key)
                if seen is not None:
                    if seen[0] != fingerprint:
                        raise IdempotencyConflictError("Idempotency-Key reused with a different request body")
                    return self._cached(seen[1]), False
            latest = await self.get(request.order_id)
            if latest is not None and latest.state not in (State.FAILED, State.CANCELLED):
                if latest.amount != request.amount or latest.method is not request.method:
                    raise DuplicateOrderError(
                        f"order {request.order_id} already has a {latest.state} {latest.method} payment "
                        f"of {latest.amount} TWD"
                    )
                return latest, False  # the same order again: the one payment it has, never a second charge
            draft = Payment(
                order_id=request.order_id,
                line_order_id=request.order_id,
                method=request.method,
                amount=request.amount,
                currency=request.currency,
                product_name=request.product_name,
                state=State.CREATED,
                created_at=self._wall(),
            )
            try:
                payment = await self._journal.create(
                    draft,
                    idempotency_key=idempotency_key,
                    request_hash=fingerprint,
                    phone_hash=self._phone_hash(request.member_phone),
                    replicate=False,
                )
            except DuplicateOrder as exc:
                raise DuplicateOrderError(str(exc)) from None
            self._cache[payment.line_order_id] = payment
        log.info(
            "payment created",
            extra={
                "order_id": payment.order_id,
                "line_order_id": payment.line_order_id,
                "method": str(payment.method),
            },
        )
        # The created row's outbox copy goes with the first change's, after its screen and before
        # any LINE Pay call, so neither the shopper's screen nor the next till's create waits on it.
        begin = Begin(one_time_key=request.one_time_key)
        try:
            return await self._apply(payment.line_order_id, begin, first=payment), True
        except BaseException:  # that change failed: the copy goes now (a second put is deduped)
            await asyncio.shield(self._journal.replicate(payment))
            raise

    async def get(self, order_id: str) -> Payment | None:
        live = self._live_attempt(order_id)
        if live is not None:
            return live
        payment = await self._journal.latest(order_id)
        return None if payment is None else self._cached(payment)

    def _live_attempt(self, order_id: str) -> Payment | None:
        """The order's attempt this process is driving, from memory (a till's long poll asks on
        every change). Every journal write updates the cache, and while an attempt is not final
        no newer one can exist (a sale is tried again only after it failed or was cancelled),
        so this is the journal's latest without a read."""
        for payment in self._cache.values():
            if payment.order_id == order_id and payment.state in NON_FINAL:
                return payment
        return None

    async def wait_change(self, order_id: str, *, after_version: int | None, wait_s: float) -> Payment:
        """The order's payment once its version differs from `after_version` (or after `wait_s`)."""
        payment = await self._require(order_id)
        version = payment.version if after_version is None else after_version
        deadline = asyncio.get_running_loop().time() + wait_s
        while payment.version == version and payment.state not in (
            State.FAILED,
            State.CANCELLED,
            State.REFUNDED,
        ):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            event = self._changed.setdefault(payment.line_order_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=left)
            except TimeoutError:
                break
            payment = await self._require(order_id)
        return payment

    async def cancel(self, order_id: str) -> Payment:
        payment = await self._require(order_id)
        return await self._apply_till(payment, Cancel())

    async def refund(
        self, order_id: str, amount: int | None, *, idempotency_key: str | None = None
    ) -> Payment:
        payment = await self._require(order_id)
        if idempotency_key is not None:
            fingerprint = hashlib.sha256(f"{order_id}:{amount}".encode()).hexdigest()
            seen = await self._journal.by_idempotency_key(IdempotencyScope.REFUND, idempotency_key)
            if seen is not None:
                if seen[0] != fingerprint:
                    raise IdempotencyConflictError("Idempotency-Key reused with a different refund")
                return self._cached(seen[1])
            remember = Remembered(
                scope=IdempotencyScope.REFUND, key=idempotency_key, request_hash=fingerprint
            )
            return await self._apply_till(payment, Refund(amount=amount), remember=remember)
        return await self._apply_till(payment, Refund(amount=amount))

    async def key_scanned(self, one_time_key: str) -> Payment | None:
        """A scanned one-time key goes to the newest scan payment still waiting for one."""
        waiting = [
            p for p in self._cache.values() if p.state is State.CREATED and p.method is Method.SCAN_CODE
        ]
        if not waiting:
            log.warning("one-time key scanned with no sale waiting for it")
            return None
        target = max(waiting, key=lambda p: p.created_at)
        return await self._apply(target.line_order_id, KeyScanned(one_time_key=one_time_key))

    # ------------------------------------------------------------ internals

    def _cached(self, payment: Payment) -> Payment:
        current = self._cache.get(payment.line_order_id)
        if current is not None and current.version >= payment.version:
            return current
        if payment.state in NON_FINAL:
            self._cache[payment.line_order_id] = payment
        return payment

    async def _require(self, order_id: str) -> Payment:
        payment = await self.get(order_id)
        if payment is None:
            raise UnknownOrder(f"no payment for order {order_id}")
        return payment

    def _phone_hash(self, phone: str | None) -> str | None:
        """The member phone as the conversion records it (the injected membership hash).

        Without a hasher (no salt configured) the phone is not kept at all: an unsalted hash
        of a phone number is as good as the number itself.
        """
        if not phone or self._phone_hasher is None:
            return None
        try:
            return self._phone_hasher(phone)
        except ValueError as exc:
            raise TillError(f"member_phone: {exc}") from None

    async def _apply_till(
        self, payment: Payment, event: Event, *, remember: Remembered | None = None
    ) -> Payment:
        try:
            return await self._apply(payment.line_order_id, event, remember=remember)
        except IllegalTransition as exc:
            raise IllegalRequest(exc.reason) from None

    async def _apply(
        self, key: str, event: Event, *, remember: Remembered | None = None, first: Payment | None = None
    ) -> Payment:
        """Apply `event` to payment `key`; `first` is an earlier state whose outbox copy goes
        before this change's (a new attempt's created row, sent with its first change)."""
        lock = self._locks.get(key) or self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._cache.get(key) or await self._journal.by_line_order_id(key)
            if current is None:
                raise PaymentError(f"no journaled payment {key}")
            step = handle(current, event, now=self._wall(), policy=self._policy)
            if step.payment != current:
                try:
                    await self._journal.save(step.payment, remember=remember, replicate=False)
                except JournalWriteError:
                    self._storage_failed.set()
                    raise
                self._cache[key] = step.payment
                log.info(
                    "payment state",
                    extra={
                        "order_id": current.order_id,
                        "line_order_id": key,
                        "from": str(current.state),
                        "to": str(step.payment.state),
                        "event": type(event).__name__,
                        "version": step.payment.version,
                    },
                )
            shown_binding: str | None = None
            for command in step.commands:
                if isinstance(command, Show):
                    shown_binding = await self._show(step.payment, command.screen) or shown_binding
            if step.payment.state is State.PAID and current.state in (State.AUTHORIZING, State.UNKNOWN):
                await self._paid_hook(step.payment, shown_binding)
            if first is not None:
                await self._journal.replicate(first)
            if step.payment != current:
                # The durable journal row came first; the outbox copy for the cloud follows the
                # screens (the shopper never waits on it) but precedes any LINE Pay call.
                await self._journal.replicate(step.payment)
            for command in step.commands:
                if not isinstance(command, Show):
                    self._schedule(key, command, step.payment.version)
            if step.payment != current:
                self._notify(key)  # after the screens: a till woken by the change sees them shown
            if step.payment.state not in NON_FINAL and key not in self._pending and key not in self._drivers:
                # Settled: the journal has it; keep memory flat on a device that runs for months.
                self._cache.pop(key, None)
            return step.payment

    def _notify(self, key: str) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    async def _show(self, payment: Payment, screen: Screen) -> str | None:
        """Show `screen` (filled in with the store name / binding URL); returns the binding URL shown."""
        if isinstance(screen, IdleScreen):
            screen = replace(screen, store_name=self._config.device.name)
        elif isinstance(screen, PaidScreen) and self._binding_url is not None:
            try:
                screen = replace(screen, binding_url=self._binding_url(payment.order_id))
            except Exception:
                log.exception("binding url failed; showing the paid screen without it")
        display = self._display()
        if display is None:
            return None
        try:
            await display.show(screen)
        except Exception:
            # The display is for the shopper; a broken one must never change a payment.
            log.exception("display failed", extra={"screen": type(screen).__name__})
            return None
        return screen.binding_url if isinstance(screen, PaidScreen) else None

    async def _paid_hook(self, payment: Payment, binding_url: str | None) -> None:
        if self._on_paid is None:
            return
        try:
            await self._on_paid(payment, binding_url)
        except Exception:
            log.exception("paid hook failed (funnel facts); the payment itself is journaled")

    def _schedule(self, key: str, command: Command, version: int) -> None:
        self._pending[key] = (command, version)
        if key in self._drivers:
            return
        if self._group is None:
            raise PaymentError("payment service is not running")
        self._drivers.add(key)
        self._group.create_task(self._drive(key), name=f"shopedge.pos.payment.{key}")

    async def _drive(self, key: str) -> None:
        try:
            while True:
                item = self._pending.pop(key, None)
                if item is None:
                    return
                command, version = item
                after = getattr(command, "after_s", 0.0)
                if after > 0:
                    await self._sleep(after)
                current = self._cache.get(key)
                if current is None or current.version != version:
                    continue  # the payment moved on (e.g. cancelled); its own commands are pending
                event = await self._execute(current, command)
                await self._apply(key, event)
        except asyncio.CancelledError:
            raise
        except JournalWriteError as exc:
            log.error(
                "payment journal refused a write; reconciled as soon as it takes writes again",
                extra={"key": key, "error": str(exc)},
            )
        except Exception:
            log.exception(
                "payment driver failed; the payment is reconciled at the next start", extra={"key": key}
            )
        finally:
            self._drivers.discard(key)
            settled = self._cache.get(key)
            if settled is not None and settled.state not in NON_FINAL and key not in self._pending:
                self._cache.pop(key, None)

    async def _execute(self, p: Payment, command: Command) -> Event:
        client = self._client
        try:
            if isinstance(command, CallPay):
                result = await client.pay(
                    order_id=p.line_order_id,
                    amount=p.amount,
                    currency=p.currency,
                    product_name=p.product_name,
                    one_time_key=command.one_time_key,
                    add_friend_ids=self.add_friend_ids,
                )
                return PayAnswered(transaction_id=result.transaction_id, paid_amount=result.paid_amount)
            if isinstance(command, CallRequest):
                req = await client.request(
                    order_id=p.line_order_id,
                    amount=p.amount,
                    currency=p.currency,
                    product_name=p.product_name,
                    add_friend_ids=self.add_friend_ids,
                )
                return RequestAnswered(
                    transaction_id=req.transaction_id,
                    payment_url=req.payment_url,
                    access_token=req.access_token,
                )
            if isinstance(command, PollRequest):
                assert p.transaction_id is not None
                return RequestStatus(code=await client.check_request(p.transaction_id))
            if isinstance(command, CallConfirm):
                assert p.transaction_id is not None
                result = await client.confirm(p.transaction_id, p.amount, p.currency)
                return PayAnswered(transaction_id=result.transaction_id, paid_amount=result.paid_amount)
            if isinstance(command, CheckLedger):
                check = client.check_order if p.method is Method.SCAN_CODE else client.online_details
                details = await check(p.line_order_id)
                return LedgerStatus(
                    status=details.status,
                    transaction_id=details.transaction_id,
                    paid_amount=details.paid_amount,
                    refunded_amount=details.refunded_amount,
                )
            if isinstance(command, CallRefund):
                if p.method is Method.SCAN_CODE:
                    await client.refund_offline(p.line_order_id, command.amount)
                else:
                    assert p.transaction_id is not None
                    await client.refund_online(p.transaction_id, command.amount)
                return RefundAnswered()
        except LinePayRejected as exc:
            return Rejected(code=exc.code, message=exc.message)
        except LinePayOutcomeUnknown as exc:
            return OutcomeUnknown(reason=str(exc))
        raise PaymentError(f"unknown command {command!r}")

    def unfinished(self) -> int:
        return sum(1 for p in self._cache.values() if p.state in NON_FINAL)

    def count(self, state: State) -> int:
        return sum(1 for p in self._cache.values() if p.state is state)
