"""The payment state machine: pure, synchronous, no I/O.

Rules of this file (checked by a test): it imports no asyncio, HTTP or SQL. `handle(payment,
event, now=..., policy=...)` returns the next `Payment` and the `Command`s the shell must carry
out; every allowed (state, event) pair is one row of `TRANSITIONS` (the events, commands and
`Payment` themselves are `pos_bridge.payment_model`, re-exported here), and any other pair raises
`IllegalTransition` (the POS API answers it with 409). The shell (`pos_bridge.service`) journals
the new payment before it performs a command, performs it, and feeds the answer back as an event.

Money safety lives here:
- a pay or confirm whose outcome is unknown is never sent again; the order is checked by id;
- LINE's "no such order" only counts as "nothing charged" once LINE must have settled the call
  (the call's own read timeout has passed since it was sent); before that we check again;
- a charge whose Σ payInfo differs from the requested amount is refunded and the payment fails;
- a refund whose outcome is unknown is resent only when the ledger shows it was not applied.

    CREATED --Begin(qr)--> CREATED --RequestAnswered--> REQUESTED --0110--> AUTHORIZING
    CREATED --Begin/KeyScanned(scan)--> AUTHORIZING --PayAnswered--> PAID --Refund--> REFUNDING
    AUTHORIZING --OutcomeUnknown/1172/1198--> UNKNOWN --LedgerStatus--> PAID | FAILED | REFUNDED
    UNKNOWN --LedgerStatus(CANCEL)--> FAILED;  UNKNOWN --LedgerStatus(AUTH_READY)--> UNKNOWN (check again)
"""

from __future__ import annotations

import dataclasses

from pos_bridge.payment_model import (
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
    Handler,
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
    Step,
)
from pos_bridge.screens import FailedScreen, IdleScreen, PaidScreen, PayScreen, WaitingScreen

__all__ = [
    "NON_FINAL",
    "TRANSITIONS",
    "Begin",
    "CallConfirm",
    "CallPay",
    "CallRefund",
    "CallRequest",
    "Cancel",
    "CheckLedger",
    "Command",
    "Event",
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
    "handle",
]

# ---------------------------------------------------------------- helpers

_REASONS: dict[str, tuple[str, str]] = {
    "1101": ("此帳戶無法使用 LINE Pay", "This LINE Pay account cannot pay"),
    "1102": ("此帳戶無法使用 LINE Pay", "This LINE Pay account cannot pay"),
    "1141": ("付款帳戶狀態異常", "Payment account problem"),
    "1142": ("餘額不足", "Insufficient balance"),
    "1180": ("付款碼已過期，請重新產生", "Payment code expired: show a new one"),
    "0121": ("付款已取消或逾時", "Payment cancelled or timed out"),
    "0122": ("付款失敗", "Payment failed"),
    "mismatch": ("金額不符，已退款", "Amount mismatch: refunded"),
    "unreachable": ("LINE Pay 暫時無法連線", "LINE Pay is unreachable"),
    "interrupted": ("付款中斷，未扣款", "Payment interrupted, nothing charged"),
    "not_found": ("LINE Pay 無此付款紀錄，未扣款", "No charge was made"),
    "CANCEL": ("LINE Pay 已取消付款，未扣款", "LINE Pay cancelled the payment: nothing charged"),
}


def _with(p: Payment, **changes: object) -> Payment:
    return dataclasses.replace(p, version=p.version + 1, **changes)  # type: ignore[arg-type]


def _failed(p: Payment, code: str, message: str, *extra: Command) -> Step:
    zh, en = _REASONS.get(code, ("付款失敗", f"Payment failed ({code})"))
    return Step(
        payment=_with(p, state=State.FAILED, error_code=code, error_message=message),
        commands=(*extra, Show(screen=FailedScreen(reason_zh=zh, reason_en=en))),
    )


def _paid(p: Payment, transaction_id: str, paid: int, refunded: int = 0) -> Step:
    if paid != p.amount:
        # Σ payInfo differs from what was asked: refund everything, then fail.
        return Step(
            payment=_with(
                p,
                state=State.REFUNDING,
                transaction_id=transaction_id,
                paid_amount=paid,
                refunded_amount=refunded,
                refund_pending=paid - refunded,
                refund_base=refunded,
                fail_after_refund=True,
                error_code="mismatch",
                error_message=f"LINE Pay charged {paid}, requested {p.amount}",
            ),
            commands=(CallRefund(amount=paid - refunded),),
        )
    state = State.REFUNDED if refunded >= paid else State.PAID
    return Step(
        payment=_with(
            p,
            state=state,
            transaction_id=transaction_id,
            paid_amount=paid,
            refunded_amount=refunded,
            error_code=None,
            error_message=None,
        ),
        commands=(Show(screen=PaidScreen(amount_twd=p.amount, binding_url=None)),),
    )


def _check_after(p: Payment, now: float, policy: Policy) -> float:
    since = p.unknown_since if p.unknown_since is not None else now
    return policy.check_interval_s if now - since < policy.check_window_s else policy.slow_check_interval_s


def _unknown(
    p: Payment, reason: str, now: float, policy: Policy, *, first_after: float | None = None
) -> Step:
    since = p.unknown_since if p.unknown_since is not None else now
    nxt = _with(p, state=State.UNKNOWN, unknown_since=since, error_code="unknown", error_message=reason)
    after = first_after if first_after is not None else _check_after(nxt, now, policy)
    return Step(
        payment=nxt,
        commands=(Show(screen=WaitingScreen(amount_twd=p.amount)), CheckLedger(after_s=after)),
    )


def _ignore(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    """A late answer to a call made before the payment moved on (e.g. cancelled meanwhile)."""
    return Step(payment=p)


def _stay(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return Step(payment=p)


# ---------------------------------------------------------------- CREATED


def _created_begin(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, Begin)
    if p.method is Method.QR:
        return Step(payment=p, commands=(CallRequest(),))
    if e.one_time_key is None:
        return Step(payment=p)  # waits for the scanner (KeyScanned)
    return _created_key(p, KeyScanned(one_time_key=e.one_time_key), now, policy)


def _created_key(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, KeyScanned)
    if p.method is not Method.SCAN_CODE:
        raise IllegalTransition(p.state, e, "this payment is a QR payment; it takes no scanned key")
    return Step(
        payment=_with(p, state=State.AUTHORIZING, sent_at=now),
        commands=(Show(screen=WaitingScreen(amount_twd=p.amount)), CallPay(one_time_key=e.one_time_key)),
    )


def _created_requested(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, RequestAnswered)
    nxt = _with(
        p,
        state=State.REQUESTED,
        transaction_id=e.transaction_id,
        payment_url=e.payment_url,
        access_token=e.access_token,
    )
    return Step(payment=nxt, commands=(_pay_screen(nxt, policy), PollRequest(after_s=policy.poll_interval_s)))


def _pay_screen(p: Payment, policy: Policy) -> Show:
    assert p.payment_url is not None
    return Show(
        screen=PayScreen(
            amount_twd=p.amount,
            qr_url=p.payment_url,
            access_token=p.access_token,
            expires_at=p.created_at + policy.qr_lifetime_s,
        )
    )


def _created_rejected(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, Rejected)
    return _failed(p, e.code, e.message)


def _created_unknown(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    # A request call moves no money: without the paymentUrl nobody can approve, and nothing is
    # confirmed, so an unanswered request is simply a failure the till may retry.
    assert isinstance(e, OutcomeUnknown)
    return _failed(p, "unreachable", e.reason)


def _cancel(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return Step(payment=_with(p, state=State.CANCELLED), commands=(Show(screen=IdleScreen(store_name="")),))


def _created_restarted(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    # The scan key is never journaled and a QR nobody saw cannot be approved: nothing was charged.
    return _failed(p, "interrupted", "the agent restarted before LINE Pay was asked to charge")


# ---------------------------------------------------------------- REQUESTED


def _requested_status(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, RequestStatus)
    if e.code == "0000":
        return Step(payment=p, commands=(PollRequest(after_s=policy.poll_interval_s),))
    if e.code == "0110":
        return Step(
            payment=_with(p, state=State.AUTHORIZING, sent_at=now),
            commands=(Show(screen=WaitingScreen(amount_twd=p.amount)), CallConfirm()),
        )
    if e.code == "0123":  # already confirmed (by us, before a crash): learn the amount
        return _unknown(p, "request already confirmed", now, policy, first_after=0.0)
    return _failed(p, e.code, f"request check answered {e.code}")


def _requested_unknown(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return Step(payment=p, commands=(PollRequest(after_s=2 * policy.poll_interval_s),))


def _requested_restarted(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return Step(payment=p, commands=(_pay_screen(p, policy), PollRequest(after_s=0.0)))


# ---------------------------------------------------------------- AUTHORIZING


def _authorizing_answered(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, PayAnswered)
    return _paid(p, e.transaction_id, e.paid_amount)


_MAYBE_DONE = frozenset({"1172", "1198", "1145"})  # used / in process: it may have succeeded


def _authorizing_rejected(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, Rejected)
    if e.code in _MAYBE_DONE:
        return _unknown(p, f"LINE Pay answered {e.code}", now, policy)
    return _failed(p, e.code, e.message)


def _authorizing_unknown(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, OutcomeUnknown)
    return _unknown(p, e.reason, now, policy)


def _authorizing_restarted(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return _unknown(p, "agent restarted during the call", now, policy, first_after=0.0)


# ---------------------------------------------------------------- UNKNOWN


def _unknown_ledger(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, LedgerStatus)
    if e.status in ("COMPLETE", "REFUND") and e.transaction_id is not None:
        return _paid(p, e.transaction_id, e.paid_amount, e.refunded_amount)
    if e.status == "FAIL":
        return _failed(p, "FAIL", "LINE Pay reports the payment failed")
    if e.status == "CANCEL":  # final: LINE cancelled the order, no money moved
        return _failed(p, "CANCEL", "LINE Pay reports the payment cancelled: nothing was charged")
    if e.status == "AUTH_READY":  # authorised, not complete: never decided as "not found"
        return Step(payment=p, commands=(CheckLedger(after_s=_check_after(p, now, policy)),))
    if p.method is Method.QR:
        # Not confirmed (yet): the request status says whether to confirm again or give up. The
        # payment stays UNKNOWN meanwhile, so the till cannot cancel a confirm that may still land.
        return Step(payment=p, commands=(PollRequest(after_s=0.0),))
    if p.sent_at is None or now - p.sent_at >= policy.pay_settle_s:
        return _failed(p, "not_found", "LINE Pay has no record of the order: nothing was charged")
    return Step(payment=p, commands=(CheckLedger(after_s=_check_after(p, now, policy)),))


def _unknown_request_status(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, RequestStatus)
    if e.code == "0110":  # approved, not confirmed: confirming again cannot charge twice (one transaction)
        return Step(
            payment=_with(p, state=State.AUTHORIZING, sent_at=now),
            commands=(Show(screen=WaitingScreen(amount_twd=p.amount)), CallConfirm()),
        )
    if e.code in ("0121", "0122"):
        return _failed(p, e.code, f"request check answered {e.code}")
    return Step(payment=p, commands=(CheckLedger(after_s=_check_after(p, now, policy)),))


def _unknown_retry(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return Step(payment=p, commands=(CheckLedger(after_s=_check_after(p, now, policy)),))


def _check_now(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return Step(payment=p, commands=(CheckLedger(after_s=0.0),))


# ---------------------------------------------------------------- PAID / REFUNDING


def _refund(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    remaining = p.paid_amount - p.refunded_amount
    amount = e.amount if isinstance(e, Refund) and e.amount is not None else remaining
    if amount > remaining:
        raise IllegalTransition(p.state, e, f"refund of {amount} exceeds the {remaining} not yet refunded")
    nxt = _with(p, state=State.REFUNDING, refund_pending=amount, refund_base=p.refunded_amount, sent_at=now)
    return Step(payment=nxt, commands=(CallRefund(amount=amount),))


def _refund_done(p: Payment, refunded: int) -> Step:
    base = dict(refund_pending=0, refund_base=0, refunded_amount=refunded)
    if p.fail_after_refund:
        return _failed(_with(p, **base), "mismatch", p.error_message or "amount mismatch")
    if refunded >= p.paid_amount:
        return Step(
            payment=_with(p, state=State.REFUNDED, **base), commands=(Show(screen=IdleScreen(store_name="")),)
        )
    return Step(payment=_with(p, state=State.PAID, **base))


def _refunding_answered(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return _refund_done(p, p.refunded_amount + p.refund_pending)


def _refunding_rejected(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, Rejected)
    if e.code in ("1164", "1165", "1198"):  # maybe applied already: read the ledger
        return Step(payment=p, commands=(CheckLedger(after_s=0.0),))
    # Refused (e.g. 1163 refund period over): the money stays paid; the till is told why.
    return Step(
        payment=_with(
            p, state=State.PAID, refund_pending=0, refund_base=0, error_code=e.code, error_message=e.message
        )
    )


def _refunding_unknown(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    return Step(payment=p, commands=(CheckLedger(after_s=policy.check_interval_s),))


def _refunding_ledger(p: Payment, e: Event, now: float, policy: Policy) -> Step:
    assert isinstance(e, LedgerStatus)
    if e.status in ("COMPLETE", "REFUND"):
        if e.refunded_amount >= p.refund_base + p.refund_pending:
            return _refund_done(p, e.refunded_amount)
        if e.refunded_amount == p.refund_base and (
            p.sent_at is None or now - p.sent_at >= policy.refund_settle_s
        ):
            return Step(payment=_with(p, sent_at=now), commands=(CallRefund(amount=p.refund_pending),))
    return Step(payment=p, commands=(CheckLedger(after_s=policy.check_interval_s),))


# ---------------------------------------------------------------- the table

S = State
TRANSITIONS: dict[tuple[State, type[Event]], Handler] = {
    (S.CREATED, Begin): _created_begin,
    (S.CREATED, KeyScanned): _created_key,
    (S.CREATED, RequestAnswered): _created_requested,
    (S.CREATED, Rejected): _created_rejected,
    (S.CREATED, OutcomeUnknown): _created_unknown,
    (S.CREATED, Cancel): _cancel,
    (S.CREATED, Restarted): _created_restarted,
    (S.REQUESTED, RequestStatus): _requested_status,
    (S.REQUESTED, OutcomeUnknown): _requested_unknown,
    (S.REQUESTED, Cancel): _cancel,  # nothing is confirmed, so an abandoned QR charges nobody
    (S.REQUESTED, Restarted): _requested_restarted,
    (S.AUTHORIZING, PayAnswered): _authorizing_answered,
    (S.AUTHORIZING, Rejected): _authorizing_rejected,
    (S.AUTHORIZING, OutcomeUnknown): _authorizing_unknown,
    (S.AUTHORIZING, Restarted): _authorizing_restarted,
    (S.UNKNOWN, LedgerStatus): _unknown_ledger,
    (S.UNKNOWN, RequestStatus): _unknown_request_status,
    (S.UNKNOWN, Rejected): _unknown_retry,
    (S.UNKNOWN, OutcomeUnknown): _unknown_retry,
    (S.UNKNOWN, Restarted): _check_now,
    (S.PAID, Refund): _refund,
    (S.PAID, Cancel): _refund,  # cancelling a completed payment refunds what is left
    (S.PAID, Restarted): _stay,
    (S.REFUNDING, RefundAnswered): _refunding_answered,
    (S.REFUNDING, Rejected): _refunding_rejected,
    (S.REFUNDING, OutcomeUnknown): _refunding_unknown,
    (S.REFUNDING, LedgerStatus): _refunding_ledger,
    (S.REFUNDING, Restarted): _check_now,
    (S.REFUNDED, Restarted): _stay,
    (S.FAILED, Restarted): _stay,
    (S.FAILED, Cancel): _stay,  # nothing to cancel; idempotent for the till
    (S.CANCELLED, Restarted): _stay,
    (S.CANCELLED, Cancel): _stay,
    # Answers to calls made before a cancel (a QR request or status check in flight).
    (S.CANCELLED, RequestAnswered): _ignore,
    (S.CANCELLED, RequestStatus): _ignore,
    (S.CANCELLED, Rejected): _ignore,
    (S.CANCELLED, OutcomeUnknown): _ignore,
}

_REASONS_ILLEGAL: dict[State, str] = {
    S.AUTHORIZING: "a LINE Pay call is in progress; wait for its result",
    S.UNKNOWN: "confirming payment with LINE Pay; do not charge again",
    S.REFUNDING: "a refund is in progress",
    S.REFUNDED: "the payment is already refunded",
    S.FAILED: "the payment failed; nothing to refund",
}


def handle(payment: Payment, event: Event, *, now: float, policy: Policy | None = None) -> Step:
    """The next payment and the commands to perform, or IllegalTransition."""
    handler = TRANSITIONS.get((payment.state, type(event)))
    if handler is None:
        raise IllegalTransition(payment.state, event, _REASONS_ILLEGAL.get(payment.state, ""))
    return handler(payment, event, now, policy or Policy())
