"""The pure payment state machine: every (state, event) pair, legal and illegal, and the money rules."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from pos_bridge import payment_flow as pf
from pos_bridge.payment_flow import (
    Begin,
    CallConfirm,
    CallPay,
    CallRefund,
    CallRequest,
    Cancel,
    CheckLedger,
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
from pos_bridge.screens import FailedScreen, IdleScreen, PaidScreen, PayScreen, WaitingScreen

NOW = 1_800_000_000.0
POLICY = Policy()

SAMPLE_EVENTS: list[pf.Event] = [
    Begin(one_time_key="123456789012345678"),
    KeyScanned(one_time_key="123456789012345678"),
    RequestAnswered(
        transaction_id="2026000000000000001", payment_url="https://pay/x", access_token="123456789012"
    ),
    RequestStatus(code="0000"),
    PayAnswered(transaction_id="2026000000000000001", paid_amount=100),
    Rejected(code="1142", message="low"),
    OutcomeUnknown(reason="timeout"),
    LedgerStatus(status="COMPLETE", transaction_id="2026000000000000001", paid_amount=100),
    RefundAnswered(),
    Cancel(),
    Refund(amount=10),
    Restarted(),
]


def payment(state: State = State.CREATED, method: Method = Method.SCAN_CODE, **kw: object) -> Payment:
    base: dict[str, object] = dict(
        order_id="A1",
        line_order_id="A1",
        method=method,
        amount=100,
        currency="TWD",
        product_name="coffee",
        state=state,
        created_at=NOW,
    )
    if state is State.REQUESTED or (state in (State.AUTHORIZING, State.UNKNOWN) and method is Method.QR):
        base.update(transaction_id="2026000000000000001", payment_url="https://pay/x", access_token="1" * 12)
    if state in (State.PAID, State.REFUNDING, State.REFUNDED):
        base.update(transaction_id="2026000000000000001", paid_amount=100)
    if state is State.REFUNDING:
        base.update(refund_pending=100)
    base.update(kw)
    return Payment(**base)  # type: ignore[arg-type]


def cmds(step: pf.Step, kind: type) -> list[object]:
    return [c for c in step.commands if isinstance(c, kind)]


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=lambda e: type(e).__name__)
def test_every_state_event_pair_is_in_the_table_or_illegal(
    state: State, event: pf.Event, method: Method
) -> None:
    p = payment(state, method)
    if (state, type(event)) not in pf.TRANSITIONS:
        with pytest.raises(IllegalTransition) as exc:
            handle(p, event, now=NOW)
        assert str(exc.value)
        return
    try:
        step = handle(p, event, now=NOW)
    except IllegalTransition:
        # Only a few table rows refuse by content (a key for a QR payment, an over-refund).
        assert (state, type(event), method) in {(State.CREATED, KeyScanned, Method.QR)} or isinstance(
            event, Refund
        )
        return
    assert step.payment.order_id == p.order_id
    # A changed payment always has a new version, so stale commands are recognised.
    if step.payment != p:
        assert step.payment.version == p.version + 1
    # At most one network command at a time.
    network = [c for c in step.commands if not isinstance(c, Show)]
    assert len(network) <= 1


def test_every_table_row_names_a_real_state_and_event() -> None:
    event_types = {type(e) for e in SAMPLE_EVENTS}
    for state, event in pf.TRANSITIONS:
        assert state in State and event in event_types


def test_module_is_pure() -> None:
    tree = ast.parse(Path(pf.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    banned = {"asyncio", "aiohttp", "requests", "sqlalchemy", "sqlite3", "socket", "http", "urllib"}
    assert not {name.split(".")[0] for name in imported} & banned


# ------------------------------------------------------------------ scan-code flow


def test_scan_happy_path() -> None:
    p = payment()
    step = handle(p, Begin(one_time_key="k" * 18), now=NOW)
    assert step.payment.state is State.AUTHORIZING and step.payment.sent_at == NOW
    assert cmds(step, CallPay) == [CallPay(one_time_key="k" * 18)]
    assert isinstance(step.commands[0], Show) and isinstance(step.commands[0].screen, WaitingScreen)
    step = handle(step.payment, PayAnswered(transaction_id="2026000000000000009", paid_amount=100), now=NOW)
    assert step.payment.state is State.PAID and step.payment.transaction_id == "2026000000000000009"
    assert [type(c.screen) for c in cmds(step, Show)] == [PaidScreen]  # type: ignore[attr-defined]


def test_scan_without_key_waits_for_the_scanner() -> None:
    step = handle(payment(), Begin(), now=NOW)
    assert step.payment.state is State.CREATED and step.commands == ()
    step = handle(step.payment, KeyScanned(one_time_key="9" * 18), now=NOW)
    assert step.payment.state is State.AUTHORIZING


@pytest.mark.parametrize(
    "code",
    [
        "1101",
        "1102",
        "1104",
        "1105",
        "1106",
        "1124",
        "1141",
        "1142",
        "1150",
        "1178",
        "1180",
        "1199",
        "1280",
        "2101",
        "2102",
        "9000",
    ],
)
def test_pay_refusals_fail_with_a_screen(code: str) -> None:
    step = handle(payment(State.AUTHORIZING), Rejected(code=code, message="no"), now=NOW)
    assert step.payment.state is State.FAILED and step.payment.error_code == code
    assert isinstance(step.commands[-1], Show) and isinstance(step.commands[-1].screen, FailedScreen)


@pytest.mark.parametrize("code", ["1172", "1198", "1145"])
def test_maybe_done_codes_check_instead_of_failing(code: str) -> None:
    step = handle(payment(State.AUTHORIZING, sent_at=NOW), Rejected(code=code), now=NOW)
    assert step.payment.state is State.UNKNOWN
    assert cmds(step, CheckLedger) == [CheckLedger(after_s=3.0)]
    assert not cmds(step, CallPay)


def test_timeout_never_resends_pay_and_finds_the_charge() -> None:
    p = handle(
        payment(State.AUTHORIZING, sent_at=NOW), OutcomeUnknown(reason="read timeout"), now=NOW
    ).payment
    assert p.state is State.UNKNOWN and p.unknown_since == NOW
    step = handle(
        p, LedgerStatus(status="COMPLETE", transaction_id="2026000000000000002", paid_amount=100), now=NOW + 3
    )
    assert step.payment.state is State.PAID and step.payment.transaction_id == "2026000000000000002"


def test_not_found_before_settle_checks_again_after_settle_fails() -> None:
    p = payment(State.UNKNOWN, sent_at=NOW, unknown_since=NOW)
    early = handle(p, LedgerStatus(status="NOT_FOUND"), now=NOW + 10)
    assert early.payment.state is State.UNKNOWN and cmds(early, CheckLedger)
    late = handle(p, LedgerStatus(status="NOT_FOUND"), now=NOW + POLICY.pay_settle_s)
    assert late.payment.state is State.FAILED and late.payment.error_code == "not_found"


def test_checks_slow_down_after_twenty_minutes_but_never_give_up_on_network_errors() -> None:
    p = payment(State.UNKNOWN, sent_at=NOW, unknown_since=NOW)
    assert cmds(handle(p, OutcomeUnknown(reason="down"), now=NOW + 60), CheckLedger) == [
        CheckLedger(after_s=3.0)
    ]
    later = handle(p, OutcomeUnknown(reason="down"), now=NOW + 21 * 60)
    assert later.payment.state is State.UNKNOWN and cmds(later, CheckLedger) == [CheckLedger(after_s=30.0)]


def test_ledger_fail_and_refund() -> None:
    p = payment(State.UNKNOWN, sent_at=NOW)
    assert handle(p, LedgerStatus(status="FAIL"), now=NOW).payment.state is State.FAILED
    refunded = handle(
        p,
        LedgerStatus(
            status="REFUND", transaction_id="2026000000000000003", paid_amount=100, refunded_amount=100
        ),
        now=NOW,
    )
    assert refunded.payment.state is State.REFUNDED


@pytest.mark.parametrize("via", ["answer", "ledger"])
def test_amount_mismatch_refunds_then_fails(via: str) -> None:
    if via == "answer":
        step = handle(
            payment(State.AUTHORIZING),
            PayAnswered(transaction_id="2026000000000000004", paid_amount=90),
            now=NOW,
        )
    else:
        step = handle(
            payment(State.UNKNOWN),
            LedgerStatus(status="COMPLETE", transaction_id="2026000000000000004", paid_amount=90),
            now=NOW,
        )
    assert step.payment.state is State.REFUNDING and step.payment.fail_after_refund
    assert cmds(step, CallRefund) == [CallRefund(amount=90)]
    done = handle(step.payment, RefundAnswered(), now=NOW)
    assert done.payment.state is State.FAILED and done.payment.error_code == "mismatch"
    assert done.payment.refunded_amount == 90


def test_restart_reconciles_each_non_final_state() -> None:
    assert handle(payment(State.CREATED), Restarted(), now=NOW).payment.state is State.FAILED
    step = handle(payment(State.AUTHORIZING), Restarted(), now=NOW)
    assert step.payment.state is State.UNKNOWN and cmds(step, CheckLedger) == [CheckLedger(after_s=0.0)]
    step = handle(payment(State.REQUESTED, Method.QR), Restarted(), now=NOW)
    assert step.payment.state is State.REQUESTED and cmds(step, PollRequest) == [PollRequest(after_s=0.0)]
    assert isinstance(step.commands[0], Show) and isinstance(step.commands[0].screen, PayScreen)
    step = handle(payment(State.REFUNDING), Restarted(), now=NOW)
    assert cmds(step, CheckLedger) == [CheckLedger(after_s=0.0)]
    for state in (State.PAID, State.REFUNDED, State.FAILED, State.CANCELLED):
        assert handle(payment(state), Restarted(), now=NOW).commands == ()


# ------------------------------------------------------------------ QR flow


def test_qr_happy_path() -> None:
    p = payment(method=Method.QR)
    step = handle(p, Begin(), now=NOW)
    assert cmds(step, CallRequest) == [CallRequest()] and step.payment.state is State.CREATED
    step = handle(
        step.payment,
        RequestAnswered(
            transaction_id="2026000000000000005", payment_url="https://pay/y", access_token="123456789012"
        ),
        now=NOW,
    )
    assert step.payment.state is State.REQUESTED
    screen = step.commands[0].screen  # type: ignore[union-attr]
    assert screen == PayScreen(
        amount_twd=100, qr_url="https://pay/y", access_token="123456789012", expires_at=NOW + 1200
    )
    assert cmds(step, PollRequest) == [PollRequest(after_s=1.0)]
    step = handle(step.payment, RequestStatus(code="0000"), now=NOW + 1)
    assert cmds(step, PollRequest) == [PollRequest(after_s=1.0)]
    step = handle(step.payment, RequestStatus(code="0110"), now=NOW + 2)
    assert step.payment.state is State.AUTHORIZING and cmds(step, CallConfirm) == [CallConfirm()]
    step = handle(
        step.payment, PayAnswered(transaction_id="2026000000000000005", paid_amount=100), now=NOW + 3
    )
    assert step.payment.state is State.PAID


@pytest.mark.parametrize("code", ["0121", "0122", "1150"])
def test_qr_request_ends(code: str) -> None:
    step = handle(payment(State.REQUESTED, Method.QR), RequestStatus(code=code), now=NOW)
    assert step.payment.state is State.FAILED


def test_qr_request_done_goes_to_ledger() -> None:
    step = handle(payment(State.REQUESTED, Method.QR), RequestStatus(code="0123"), now=NOW)
    assert step.payment.state is State.UNKNOWN and cmds(step, CheckLedger) == [CheckLedger(after_s=0.0)]


def test_qr_confirm_unknown_not_found_polls_request_again_without_becoming_cancellable() -> None:
    p = handle(payment(State.AUTHORIZING, Method.QR), OutcomeUnknown(reason="reset"), now=NOW).payment
    step = handle(p, LedgerStatus(status="NOT_FOUND"), now=NOW + 3)
    assert step.payment.state is State.UNKNOWN and cmds(step, PollRequest) == [PollRequest(after_s=0.0)]
    with pytest.raises(IllegalTransition):
        handle(step.payment, Cancel(), now=NOW + 3)
    again = handle(step.payment, RequestStatus(code="0110"), now=NOW + 4)
    assert again.payment.state is State.AUTHORIZING and cmds(again, CallConfirm) == [CallConfirm()]
    done = handle(step.payment, RequestStatus(code="0123"), now=NOW + 4)
    assert done.payment.state is State.UNKNOWN and cmds(done, CheckLedger)
    gone = handle(step.payment, RequestStatus(code="0121"), now=NOW + 4)
    assert gone.payment.state is State.FAILED


def test_qr_request_errors() -> None:
    p = payment(method=Method.QR)
    assert handle(p, Rejected(code="2101"), now=NOW).payment.state is State.FAILED
    assert handle(p, OutcomeUnknown(reason="down"), now=NOW).payment.error_code == "unreachable"
    step = handle(payment(State.REQUESTED, Method.QR), OutcomeUnknown(reason="x"), now=NOW)
    assert step.payment.state is State.REQUESTED and cmds(step, PollRequest) == [PollRequest(after_s=2.0)]


def test_cancel_unpaid_qr_returns_to_idle_and_ignores_late_answers() -> None:
    step = handle(payment(State.REQUESTED, Method.QR), Cancel(), now=NOW)
    assert step.payment.state is State.CANCELLED
    assert isinstance(step.commands[0], Show) and isinstance(step.commands[0].screen, IdleScreen)
    late = handle(step.payment, RequestStatus(code="0110"), now=NOW)
    assert late.payment == step.payment and late.commands == ()


def test_cancel_while_authorizing_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="in progress"):
        handle(payment(State.AUTHORIZING), Cancel(), now=NOW)
    with pytest.raises(IllegalTransition, match="do not charge again"):
        handle(payment(State.UNKNOWN), Cancel(), now=NOW)


# ------------------------------------------------------------------ refunds


def test_partial_then_full_refund() -> None:
    step = handle(payment(State.PAID), Refund(amount=30), now=NOW)
    assert step.payment.state is State.REFUNDING and cmds(step, CallRefund) == [CallRefund(amount=30)]
    p = handle(step.payment, RefundAnswered(), now=NOW).payment
    assert p.state is State.PAID and p.refunded_amount == 30
    step = handle(p, Cancel(), now=NOW)
    assert cmds(step, CallRefund) == [CallRefund(amount=70)]
    assert handle(step.payment, RefundAnswered(), now=NOW).payment.state is State.REFUNDED


def test_over_refund_is_illegal() -> None:
    with pytest.raises(IllegalTransition, match="exceeds"):
        handle(payment(State.PAID, refunded_amount=50), Refund(amount=51), now=NOW)
    with pytest.raises(ValueError, match="positive"):
        Refund(amount=0)


def test_refund_unknown_is_resent_only_when_the_ledger_shows_it_missing_after_settle() -> None:
    p = handle(payment(State.PAID), Refund(amount=40), now=NOW).payment
    step = handle(p, OutcomeUnknown(reason="timeout"), now=NOW)
    assert cmds(step, CheckLedger) == [CheckLedger(after_s=3.0)]
    applied = handle(
        p,
        LedgerStatus(status="COMPLETE", transaction_id="t", paid_amount=100, refunded_amount=40),
        now=NOW + 3,
    )
    assert (
        applied.payment.state is State.PAID
        and applied.payment.refunded_amount == 40
        and not cmds(applied, CallRefund)
    )
    early = handle(p, LedgerStatus(status="COMPLETE", transaction_id="t", paid_amount=100), now=NOW + 3)
    assert not cmds(early, CallRefund) and cmds(early, CheckLedger)
    late = handle(p, LedgerStatus(status="COMPLETE", transaction_id="t", paid_amount=100), now=NOW + 61)
    assert cmds(late, CallRefund) == [CallRefund(amount=40)]


@pytest.mark.parametrize(("code", "checks"), [("1165", True), ("1164", True), ("1163", False)])
def test_refund_refusals(code: str, checks: bool) -> None:
    p = handle(payment(State.PAID), Refund(), now=NOW).payment
    step = handle(p, Rejected(code=code), now=NOW)
    if checks:
        assert step.payment.state is State.REFUNDING and cmds(step, CheckLedger)
    else:
        assert step.payment.state is State.PAID and step.payment.error_code == code


def test_payment_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        payment(amount=0)
    with pytest.raises(ValueError, match="at least 1 s"):
        Policy(poll_interval_s=0.5)
    assert dataclasses.is_dataclass(payment())
