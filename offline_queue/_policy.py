"""The outbox's rules as pure functions: which records a claim hands out, when a failed record
retries or gives up, and what the disk budget admits. No SQLite here; `_store` applies the plans.

Ordering contract (what MQTT uplink relies on): a stream is strict FIFO by record id. A claim
walks the stream from its oldest record and hands out records until `limit`, and it STOPS at the
first record that is in flight (live lease) or waiting for a retry (`not_before` in the future):
later records of that stream are not handed out until that record is acked, dead-lettered or
claimable again. So a stream has at most one claimed batch at a time, a released record keeps
its place at the head, and nothing overtakes a record that is being retried. Expired telemetry
and records whose lease ran out `max_attempts` times are removed on the way (they no longer
block). Streams are independent of each other.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "RETRY_BASE_S",
    "RETRY_CAP_S",
    "Admission",
    "ClaimPlan",
    "HeadRow",
    "admit",
    "plan_claim",
    "release_outcome",
    "retry_delay",
]

# First retry after ~1 s, doubling, capped at 5 min: Greengrass retries exports "at intervals of
# up to five minutes"; a stream blocked longer than that behind one record hurts more than it helps.
RETRY_BASE_S = 1.0
RETRY_CAP_S = 300.0
RETRY_JITTER = 0.5
_RNG = random.Random()


@dataclass(frozen=True, kw_only=True)
class HeadRow:
    """The claim-relevant columns of one stored record."""

    id: int
    attempts: int
    expires_at: float | None
    not_before: float
    lease_until: float | None


@dataclass(kw_only=True)
class ClaimPlan:
    """What one claim does: lease `claim`, delete `expire`, dead-letter `dead` (id, reason)."""

    claim: list[int] = field(default_factory=list)
    expire: list[int] = field(default_factory=list)
    dead: list[tuple[int, str]] = field(default_factory=list)
    blocked_by: int | None = None


def plan_claim(rows: Iterable[HeadRow], *, now: float, limit: int, max_attempts: int) -> ClaimPlan:
    """Walk one stream's records oldest first (`rows` must be in id order) and plan a claim.

    Consumes `rows` lazily and stops as soon as the plan is complete, so the caller can pass a
    live cursor over a long stream.
    """
    plan = ClaimPlan()
    if limit <= 0:
        return plan
    for row in rows:
        if row.lease_until is not None and row.lease_until > now:
            plan.blocked_by = row.id
            break
        if row.expires_at is not None and row.expires_at <= now:
            plan.expire.append(row.id)
            continue
        if row.not_before > now:
            plan.blocked_by = row.id
            break
        if row.lease_until is not None and row.attempts >= max_attempts:
            plan.dead.append(
                (row.id, f"lease expired on each of {row.attempts} attempts (consumer crashed?)")
            )
            continue
        plan.claim.append(row.id)
        if len(plan.claim) >= limit:
            break
    return plan


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before retrying a record that failed on its `attempts`-th try.

    Capped exponential backoff with full jitter, the same policy as `base.backoff.Backoff`
    (the outbox is a leaf library and imports no other project package).
    """
    raw = min(RETRY_CAP_S, RETRY_BASE_S * float(2 ** min(max(0, attempts - 1), 30)))
    return raw * (1 - RETRY_JITTER * (rng or _RNG).random())


def release_outcome(
    *, attempts: int, max_attempts: int, permanent: bool, error: str, transient: bool = False
) -> tuple[bool, str]:
    """(dead?, reason) for a released record: dead on a permanent error or when attempts ran out.

    A transient failure (the world, not the record: see `offline_queue._consumer`) never uses
    up the attempts; it only backs off.
    """
    if permanent:
        return True, f"permanent error: {error}"
    if attempts >= max_attempts and not transient:
        return True, f"gave up after {attempts} attempts: {error}"
    return False, error


class Admission(Enum):
    """What the disk budget says about a new record (after expired telemetry was shed)."""

    ACCEPT = "accept"
    SHED_OLDEST_TELEMETRY = "shed_oldest_telemetry"  # critical: drop oldest telemetry to make room
    OVER_BUDGET = "over_budget"  # critical and no telemetry left: accept, a payment is never lost
    REFUSE = "refuse"  # telemetry over budget: refuse the new record


def admit(*, critical: bool, used: int, size: int, budget: int, telemetry_used: int) -> Admission:
    """Decide how a record of `size` bytes fits a budget of which `used` bytes are taken.

    Only critical records may displace (older) telemetry, and a critical record is accepted over
    budget rather than lost; new telemetry is refused while the budget is full.
    """
    if used + size <= budget:
        return Admission.ACCEPT
    if not critical:
        return Admission.REFUSE
    if telemetry_used > 0:
        return Admission.SHED_OLDEST_TELEMETRY
    return Admission.OVER_BUDGET
