"""The outbox's pure rules: claim planning, retry outcome and delay, disk-budget admission."""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import offline_queue
from offline_queue._policy import (
    RETRY_BASE_S,
    RETRY_CAP_S,
    Admission,
    HeadRow,
    admit,
    plan_claim,
    release_outcome,
    retry_delay,
)

NOW = 1000.0


def row(
    rid: int,
    *,
    attempts: int = 0,
    expires_at: float | None = None,
    not_before: float = 0.0,
    lease_until: float | None = None,
) -> HeadRow:
    return HeadRow(
        id=rid, attempts=attempts, expires_at=expires_at, not_before=not_before, lease_until=lease_until
    )


def test_fresh_records_are_claimed_oldest_first_up_to_limit() -> None:
    plan = plan_claim([row(1), row(2), row(3)], now=NOW, limit=2, max_attempts=5)
    assert (plan.claim, plan.expire, plan.dead, plan.blocked_by) == ([1, 2], [], [], None)


def test_live_lease_blocks_the_stream() -> None:
    plan = plan_claim([row(1, lease_until=NOW + 1), row(2)], now=NOW, limit=10, max_attempts=5)
    assert (plan.claim, plan.blocked_by) == ([], 1)


def test_lease_ending_exactly_now_has_expired() -> None:
    plan = plan_claim([row(1, attempts=1, lease_until=NOW), row(2)], now=NOW, limit=10, max_attempts=5)
    assert plan.claim == [1, 2]


def test_waiting_retry_blocks_later_records() -> None:
    plan = plan_claim([row(1, attempts=1, not_before=NOW + 0.1), row(2)], now=NOW, limit=10, max_attempts=5)
    assert (plan.claim, plan.blocked_by) == ([], 1)


def test_retry_due_now_is_claimable() -> None:
    plan = plan_claim([row(1, attempts=1, not_before=NOW), row(2)], now=NOW, limit=10, max_attempts=5)
    assert plan.claim == [1, 2]


def test_expired_records_are_dropped_and_do_not_block() -> None:
    plan = plan_claim(
        [row(1, expires_at=NOW), row(2, expires_at=NOW - 5, not_before=NOW + 9), row(3, expires_at=NOW + 1)],
        now=NOW,
        limit=10,
        max_attempts=5,
    )
    assert (plan.claim, plan.expire) == ([3], [1, 2])


def test_expired_record_in_flight_still_blocks_until_its_lease_ends() -> None:
    plan = plan_claim(
        [row(1, expires_at=NOW - 1, lease_until=NOW + 1), row(2)], now=NOW, limit=10, max_attempts=5
    )
    assert (plan.claim, plan.expire, plan.blocked_by) == ([], [], 1)


def test_lease_run_out_max_attempts_times_is_dead_and_unblocks() -> None:
    plan = plan_claim([row(1, attempts=3, lease_until=NOW - 1), row(2)], now=NOW, limit=10, max_attempts=3)
    assert plan.claim == [2]
    assert plan.dead[0][0] == 1 and "3 attempts" in plan.dead[0][1]


def test_released_record_with_attempts_left_is_claimed_again() -> None:
    plan = plan_claim([row(1, attempts=2)], now=NOW, limit=10, max_attempts=3)
    assert plan.claim == [1]


def test_zero_limit_claims_nothing_and_reads_nothing() -> None:
    def rows() -> Iterator[HeadRow]:
        raise AssertionError("must not be read")
        yield row(1)

    assert plan_claim(rows(), now=NOW, limit=0, max_attempts=3).claim == []


def test_plan_stops_reading_once_complete() -> None:
    read: list[int] = []

    def rows() -> Iterator[HeadRow]:
        for i in range(1, 1000):
            read.append(i)
            yield row(i)

    assert plan_claim(rows(), now=NOW, limit=3, max_attempts=3).claim == [1, 2, 3]
    assert read == [1, 2, 3]


@pytest.mark.parametrize(
    ("attempts", "permanent", "dead", "reason"),
    [
        (1, False, False, "boom"),
        (2, False, False, "boom"),
        (3, False, True, "gave up after 3 attempts: boom"),
        (4, False, True, "gave up after 4 attempts: boom"),
        (1, True, True, "permanent error: boom"),
        (0, True, True, "permanent error: boom"),
    ],
)
def test_release_outcome(attempts: int, permanent: bool, dead: bool, reason: str) -> None:
    assert release_outcome(attempts=attempts, max_attempts=3, permanent=permanent, error="boom") == (
        dead,
        reason,
    )


def test_retry_delay_grows_and_is_capped() -> None:
    rng = random.Random(7)
    for attempts in range(0, 40):
        delay = retry_delay(attempts, rng)
        raw = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, attempts - 1))
        assert raw * 0.5 <= delay <= raw
    assert retry_delay(1, random.Random(1)) <= RETRY_BASE_S


@pytest.mark.parametrize(
    ("critical", "used", "telemetry_used", "want"),
    [
        (True, 0, 0, Admission.ACCEPT),
        (False, 0, 0, Admission.ACCEPT),
        (False, 90, 0, Admission.ACCEPT),  # exactly fills the budget
        (False, 91, 50, Admission.REFUSE),
        (True, 91, 50, Admission.SHED_OLDEST_TELEMETRY),
        (True, 91, 0, Admission.OVER_BUDGET),
        (True, 500, 0, Admission.OVER_BUDGET),
        (False, 500, 0, Admission.REFUSE),
    ],
)
def test_admission(critical: bool, used: int, telemetry_used: int, want: Admission) -> None:
    assert admit(critical=critical, used=used, size=10, budget=100, telemetry_used=telemetry_used) is want


def test_policy_is_pure() -> None:
    source = Path(offline_queue.__file__).with_name("_policy.py").read_text()
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m.split(".")[0] in {"asyncio", "sqlite3", "sqlalchemy", "threading"}}


def test_package_exports_exactly_its_all() -> None:
    public = {
        name
        for name in dir(offline_queue)
        if not name.startswith("_") and not isinstance(getattr(offline_queue, name), ModuleType)
    }
    assert set(offline_queue.__all__) == public
    classes = [getattr(offline_queue, name) for name in offline_queue.__all__]
    assert all(c.__module__.startswith("offline_queue._") for c in classes if isinstance(c, type))
