"""Issue 14, item 4, in the pure state machine: CANCEL and AUTH_READY from the offline check,
and an overcharge refunded like a short charge."""

from __future__ import annotations

import pytest

from pos_bridge.payment_flow import (
    CallRefund,
    CheckLedger,
    LedgerStatus,
    PayAnswered,
    RefundAnswered,
    State,
    handle,
)
from pos_bridge.screens import FailedScreen
from tests.unit.pos_bridge.test_payment_flow import NOW, POLICY, cmds, payment


def test_cancel_is_final_and_charges_nothing() -> None:
    step = handle(payment(State.UNKNOWN, sent_at=NOW - 1), LedgerStatus(status="CANCEL"), now=NOW)
    assert step.payment.state is State.FAILED and step.payment.error_code == "CANCEL"
    assert step.payment.paid_amount == 0 and cmds(step, CallRefund) == []
    [screen] = [c.screen for c in step.commands if hasattr(c, "screen")]
    assert isinstance(screen, FailedScreen) and "nothing charged" in screen.reason_en


@pytest.mark.parametrize("sent_ago", [1.0, POLICY.pay_settle_s + 1, POLICY.check_window_s + 1])
def test_auth_ready_is_checked_again_never_taken_for_not_found(sent_ago: float) -> None:
    p = payment(State.UNKNOWN, sent_at=NOW - sent_ago, unknown_since=NOW - sent_ago)
    step = handle(p, LedgerStatus(status="AUTH_READY"), now=NOW)
    assert step.payment.state is State.UNKNOWN
    [check] = cmds(step, CheckLedger)
    slow = sent_ago > POLICY.check_window_s
    assert check.after_s == (POLICY.slow_check_interval_s if slow else POLICY.check_interval_s)


@pytest.mark.parametrize("paid", [130, 99])  # over and short are one rule
def test_any_amount_but_the_requested_one_is_refunded_in_full(paid: int) -> None:
    step = handle(
        payment(State.AUTHORIZING),
        PayAnswered(transaction_id="2026000000000000009", paid_amount=paid),
        now=NOW,
    )
    assert step.payment.state is State.REFUNDING and cmds(step, CallRefund) == [CallRefund(amount=paid)]
    done = handle(step.payment, RefundAnswered(), now=NOW)
    assert (done.payment.state, done.payment.error_code, done.payment.refunded_amount) == (
        State.FAILED,
        "mismatch",
        paid,
    )
