"""The paid half of welcome-coupon delivery: draining the private `coupon_job` outbox stream.

A push whose handling raises follows the outbox's consumer rule (`offline_queue.settle_failure`):
transient failures retry with backoff, a record that fails for good or the same way
`DEFAULT_REPEATS` times is dead-lettered, and the rest of the stream goes on.

For each queued push: the campaign's monthly budget and the account's quota, the push with the
row's `X-Line-Retry-Key`, and the action `PUSH_ACTIONS` names for LINE's answer (mark sent,
retry later with the same key, refresh the token, stop the campaign for the month, or bury).
`CouponService` takes these methods from `PushJobs`; `_Service` names what they use of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from base.backoff import Backoff
from base.health import Level
from membership.config import CampaignConfig
from membership.context import MembershipContext, MembershipSettings
from membership.coupons._funnel import FactKind
from membership.coupons._ledger import (
    LedgerRow,
    LedgerState,
    campaign_pushes_blocking,
    campaign_stop_blocking,
    get_blocking,
    stop_campaign_blocking,
    transition_blocking,
)
from membership.coupons._line_http import LineMessaging, Quota, QuotaUnavailable
from membership.coupons._policy import (
    PUSH_ACTIONS,
    RETRY_KEY_SAFE_S,
    Budget,
    BudgetVerdict,
    Outcome,
    PushAction,
    budget_verdict,
    classify,
    local_month,
)
from offline_queue import Durability, FailureKind, ReleasePort, settle_failure

__all__ = ["PUSH_STREAM", "SERVICE_NAME", "OutboxLike", "PushJobs"]

log = logging.getLogger("membership.coupons._service")

# Private work stream: the uplink never drains it (its kinds are the shared stream names), so
# push jobs reach LINE before anything is acked. Delivery results go upstream as facts.
PUSH_STREAM = "coupon_job"
SERVICE_NAME = "coupons"
_T = TypeVar("_T")


class OutboxLike(ReleasePort, Protocol):
    """The part of `offline_queue.Outbox` this capability uses (the shared contract)."""

    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        durability: Any = ...,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int: ...

    async def claim(self, stream: str, limit: int = 100, lease: float = 30.0) -> list[Any]: ...

    async def ack(self, ids: Iterable[int]) -> None: ...


class _Service(Protocol):
    """What the push jobs use of `CouponService` (its plumbing and its own push methods)."""

    name: str
    ctx: MembershipContext
    config: MembershipSettings
    _quota: tuple[float, Quota] | None
    _pause_until: float
    _stopped: tuple[str, str] | None

    @property
    def outbox(self) -> OutboxLike: ...
    async def _db(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T: ...
    async def line(self) -> LineMessaging: ...
    async def _refresh_token(self) -> bool: ...
    def _now(self) -> float: ...
    def _campaign(self, name: str) -> CampaignConfig | None: ...
    async def _fact(self, kind: FactKind, row: LedgerRow, at: float) -> None: ...
    def _healthy(self, month: str) -> None: ...
    async def _budget(self, campaign: CampaignConfig, month: str) -> Budget: ...
    def _count_push(self) -> None: ...
    async def _process(self, record: Any) -> None: ...
    async def _retry(self, record: Any, row: LedgerRow, error: str, retry_at: float) -> None: ...
    @staticmethod
    def _delay(attempts: int) -> float: ...
    async def _hold(self, record_id: int, row: LedgerRow, reason: str, now: float) -> None: ...
    async def _stop(self, campaign: CampaignConfig, month: str, reason: str, now: float) -> None: ...


class PushJobs:
    """The `coupon_job` worker half of `CouponService` (a mixin; see `_Service`)."""

    _quota: tuple[float, Quota] | None  # (monotonic time read, the account's quota)
    _pause_until: float  # wall clock; see `_retry`
    _stopped: tuple[str, str] | None  # (month, health detail) of a stopped campaign

    async def drain_once(self: _Service) -> int:
        """Claim and process one batch of `coupon_job` records; returns how many."""
        if self._now() < self._pause_until:
            return 0
        records = await self.outbox.claim(PUSH_STREAM, limit=self.config.coupons.push_batch, lease=60.0)
        for i, record in enumerate(records):
            if self._now() < self._pause_until:
                # LINE asked us to back off (5xx, timeout, 429): the rest of the batch waits too.
                for waiting in records[i:]:
                    await self.outbox.release(
                        waiting.id, "waiting: LINE asked to back off", retry_at=self._pause_until
                    )
                break
            try:
                await self._process(record)
            except Exception as exc:  # the consumer rule: this record retries or is buried, the rest go on
                failure = await settle_failure(self.outbox, record.id, record.attempts, exc)
                verb = "dead-lettered" if failure.dead else "will be retried"
                log.error("coupon push failed", extra={"record_id": record.id, "error": failure.reason})
                level = Level.RED if failure.kind is FailureKind.TRANSIENT else Level.AMBER
                self.ctx.health.set(
                    self.name,
                    level,
                    f"coupon push {record.id} {verb}: {failure.reason}"
                    + ("; see `shopedge queue dead-letters --stream coupon_job`" if failure.dead else ""),
                )
        return len(records)

    async def _budget(self: _Service, campaign: CampaignConfig, month: str) -> Budget:
        monotonic = self.ctx.clock()
        cached = self._quota
        if cached is None or monotonic - cached[0] >= self.config.coupons.quota_cache_s:
            line = await self.line()
            cached = self._quota = (monotonic, await line.quota())
        quota = cached[1]
        pushes = await self._db(campaign_pushes_blocking, campaign.name, month)
        return Budget(
            campaign_pushes=pushes,
            campaign_budget=campaign.monthly_budget,
            quota_limited=quota.limited,
            quota_value=quota.value,
            quota_used=quota.used,
        )

    def _count_push(self: _Service) -> None:
        if self._quota is not None:
            at, quota = self._quota
            self._quota = (at, Quota(limited=quota.limited, value=quota.value, used=quota.used + 1))

    async def _process(self: _Service, record: Any) -> None:
        payload: dict[str, Any] = record.payload
        outbox = self.outbox
        campaign = self._campaign(str(payload.get("campaign")))
        row = await self._db(get_blocking, str(payload.get("campaign")), str(payload.get("line_user_id")))
        if campaign is None or row is None:
            await outbox.release(record.id, "no campaign or ledger row for this push", permanent=True)
            return
        if row.state is not LedgerState.QUEUED:
            await outbox.ack([record.id])  # already settled (sent before a crash, or dead)
            return
        key = (campaign.name, row.line_user_id)
        now = self._now()
        month = local_month(now, self.config.coupons.timezone)
        stopped = await self._db(campaign_stop_blocking, campaign.name, month)
        if stopped is not None:
            await self._hold(record.id, row, f"campaign stopped for {month}: {stopped}", now)
            return
        if row.first_push_at is not None and now - row.first_push_at > RETRY_KEY_SAFE_S:
            await self._db(
                transition_blocking,
                *key,
                from_states=(LedgerState.QUEUED,),
                to_state=LedgerState.UNKNOWN,
                now=now,
                error="retry key older than 23 h: LINE may have it, a resend could duplicate",
            )
            await outbox.release(record.id, "retry key expired", permanent=True)
            return
        try:
            budget = await self._budget(campaign, month)
        except QuotaUnavailable as exc:
            if classify(exc.answer) is Outcome.UNAUTHORIZED:
                refreshed = await self._refresh_token()
                delay = 0.0 if refreshed else max(60.0, self._delay(row.attempts))
                await outbox.release(record.id, "quota check: 401 unauthorized", retry_at=now + delay)
                return
            await outbox.release(
                record.id, f"quota check failed: {exc}", retry_at=now + self._delay(row.attempts)
            )
            self.ctx.health.set(self.name, Level.AMBER, f"quota check failed: {exc}")
            return
        verdict = budget_verdict(budget)
        if verdict is not BudgetVerdict.ALLOW:
            reason = (
                f"monthly budget of {budget.campaign_budget} pushes spent"
                if verdict is BudgetVerdict.OVER_BUDGET
                else f"account quota spent ({budget.quota_used}/{budget.quota_value})"
            )
            await self._stop(campaign, month, reason, now)
            await self._hold(record.id, row, reason, now)
            return
        counted = await self._db(
            transition_blocking,
            *key,
            from_states=(LedgerState.QUEUED,),
            to_state=LedgerState.QUEUED,
            now=now,
            attempts=row.attempts + 1,
            first_push_at=row.first_push_at or now,
        )
        if not counted:  # a reply took the row over meanwhile: look again once it is settled
            await outbox.release(record.id, "a reply is being tried for this user", retry_at=now + 30.0)
            return
        line = await self.line()
        answer = await line.push(row.line_user_id, payload["messages"], row.retry_key)
        outcome = classify(answer)
        action = PUSH_ACTIONS[outcome]
        now = self._now()
        log.info(
            "coupon push",
            extra={
                "campaign": campaign.name,
                "outcome": outcome.value,
                "status": answer.status,
                "attempt": row.attempts + 1,
            },
        )
        if action is PushAction.MARK_SENT:
            if outcome is Outcome.SENT:
                self._count_push()
            await self._db(
                transition_blocking,
                *key,
                from_states=(LedgerState.QUEUED,),
                to_state=LedgerState.SENT,
                now=now,
                channel="push",
                sent_at=now,
                month=month,
                request_id=answer.accepted_request_id or answer.request_id,
            )
            await self._fact(FactKind.COUPON_PUSHED, row, now)
            await outbox.ack([record.id])
            self._healthy(month)
        elif action is PushAction.RETRY:
            error = f"{outcome.value}: {answer.status} {answer.message}".strip()
            await self._retry(record, row, error, now + self._delay(row.attempts))
        elif action is PushAction.ALERT_RETRY:
            refreshed = await self._refresh_token()
            delay = 0.0 if refreshed else max(60.0, self._delay(row.attempts))
            await self._retry(record, row, "401 unauthorized", now + delay)
        elif action is PushAction.STOP_CAMPAIGN:
            await self._stop(campaign, month, "LINE monthly message limit reached", now)
            await self._hold(record.id, row, "LINE monthly message limit reached", now)
        else:
            error = f"{answer.status} {answer.message}".strip()
            await self._db(
                transition_blocking,
                *key,
                from_states=(LedgerState.QUEUED,),
                to_state=LedgerState.DEAD,
                now=now,
                error=error,
            )
            await outbox.release(record.id, f"LINE refused the push: {error}", permanent=True)
            log.warning("coupon push dead-lettered", extra={"campaign": campaign.name, "error": error})

    async def _retry(self: _Service, record: Any, row: LedgerRow, error: str, retry_at: float) -> None:
        """Retry later with the same key. A push's real limit is the retry key's 23 h, not the
        outbox's attempt count: a record about to use its last attempt is handed over to a fresh
        one (same payload and key, next generation's dedupe key) instead of being buried. The
        worker pauses until `retry_at` either way (see `drain_once`)."""
        self._pause_until = max(self._pause_until, retry_at)
        if record.attempts < self.config.storage.outbox_max_attempts:
            await self.outbox.release(record.id, error, retry_at=retry_at)
            return
        await self.outbox.put(
            PUSH_STREAM,
            record.payload,
            durability=Durability.CRITICAL,
            dedupe_key=f"coupon:{row.campaign}:{row.line_user_id}:{row.attempts + 1}",
        )
        await self.outbox.ack([record.id])
        log.info("coupon push handed to a fresh outbox record", extra={"attempts": row.attempts + 1})

    @staticmethod
    def _delay(attempts: int) -> float:
        return Backoff(base=2.0, cap=300.0, attempts=attempts).next_delay()

    async def _hold(self: _Service, record_id: int, row: LedgerRow, reason: str, now: float) -> None:
        await self._db(
            transition_blocking,
            row.campaign,
            row.line_user_id,
            from_states=(LedgerState.QUEUED,),
            to_state=LedgerState.HELD,
            now=now,
            error=reason,
        )
        await self.outbox.release(record_id, reason, permanent=True)

    async def _stop(self: _Service, campaign: CampaignConfig, month: str, reason: str, now: float) -> None:
        await self._db(stop_campaign_blocking, campaign.name, month, reason, now)
        detail = f"campaign {campaign.name} stopped for {month}: {reason}"
        self._stopped = (month, detail)
        self.ctx.health.set(self.name, Level.AMBER, detail)
        log.warning(
            "coupon campaign stopped", extra={"campaign": campaign.name, "month": month, "reason": reason}
        )
