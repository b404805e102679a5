"""The beacon greeting's shell: a relayed `beacon` event in, a free greeting by reply out.

Owns the `beacon_events`, `beacon_greeted` and `beacon_rejections` tables (migration
0700_greetings), reading the state `membership.greeting.decide` needs, performing its decision
and recording what happened, plus the funnel facts of a visit. The conversion consumer hands it
every `line_event` envelope whose event is a `beacon` (`Greeter.handle`).

Sending goes through the coupons service's Messaging API client (one SDK session, the same
timeouts and token refresh). A greeting with a `campaign` is delivered by the coupons service
itself, the greeting text first in the same request, so its ledger still gives one coupon per
shopper per campaign; a shopper who already has that coupon is greeted with the text alone.

Bad input (`REJECTIONS`) is counted in `beacon_rejections`, logged once per reason and process
(a copied beacon can send thousands), answered with nothing, and never raises upstream.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from base.health import Level
from base.statedb import StateDB
from membership.context import MembershipContext, MembershipSettings
from membership.coupons import (
    Budget,
    BudgetVerdict,
    DeliveryStatus,
    Fact,
    FactKind,
    Outcome,
    WelcomeRequest,
    budget_verdict,
    classify,
    record_fact,
)
from membership.greeting import (
    REJECTIONS,
    Action,
    BeaconSetup,
    BeaconVisit,
    Decision,
    GreetingConfig,
    Malformed,
    Reason,
    ShopperState,
    decide,
    greeting_messages,
    parse_beacon_event,
)

__all__ = [
    "GREETER_SERVICE",
    "GreetOutcome",
    "Greeter",
    "rejection_counts_blocking",
]

log = logging.getLogger(__name__)

GREETER_SERVICE = "greeter"
_REPLY_ATTEMPTS = 2
_PUSH_ATTEMPTS = 3
_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class GreetOutcome:
    """What happened to one beacon event: the decision's reason and, if something was sent,
    how (`reply`/`push`) and with what result (`sent`, `queued`, `unknown`, `failed`...)."""

    reason: Reason
    channel: str | None = None
    result: str | None = None
    detail: str = ""


# ---------------------------------------------------------------- database (run in a thread)

# Plain SQL on the pooled sqlite3 connection (base.statedb); the tables are migration
# 0700_greetings's. `count` is quoted: it is also the name of an SQL function.
_EVENT_COLUMNS = (
    "webhook_event_id",
    "store_id",
    "device_id",
    "line_user_id",
    "hwid",
    "type",
    "reason",
    "greeting",
    "at",
    "recorded_at",
)
_SELECT_EVENT_SEEN = "SELECT webhook_event_id FROM beacon_events WHERE webhook_event_id = ?"
_SELECT_LAST_GREETED = "SELECT last_greeted_at FROM beacon_greeted WHERE store_id = ? AND line_user_id = ?"
_INSERT_EVENT = (
    f"INSERT INTO beacon_events ({', '.join(_EVENT_COLUMNS)})"
    f" VALUES ({', '.join(':' + name for name in _EVENT_COLUMNS)}) ON CONFLICT DO NOTHING"
)
_UPDATE_EVENT_OUTCOME = (
    "UPDATE beacon_events SET channel = ?, outcome = ?, month = ? WHERE webhook_event_id = ?"
)
_UPSERT_GREETED = (
    "INSERT INTO beacon_greeted (store_id, line_user_id, greeting, last_greeted_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (store_id, line_user_id)"
    " DO UPDATE SET greeting = excluded.greeting, last_greeted_at = excluded.last_greeted_at"
)
_UPSERT_REJECTION = (
    'INSERT INTO beacon_rejections (reason, "count", last_at) VALUES (?, 1, ?)'
    ' ON CONFLICT (reason) DO UPDATE SET "count" = beacon_rejections."count" + 1, last_at = excluded.last_at'
)
_SELECT_REJECTION_COUNT = 'SELECT "count" FROM beacon_rejections WHERE reason = ?'
_SELECT_REJECTION_COUNTS = 'SELECT reason, "count" FROM beacon_rejections'
_SELECT_GREETING_PUSHES = (
    "SELECT count(*) FROM beacon_events"
    " WHERE greeting = ? AND month = ? AND channel = 'push' AND outcome IN ('sent', 'queued')"
)


def _state_blocking(db: StateDB, store_id: str, visit: BeaconVisit) -> ShopperState:
    with db.transaction() as conn:
        seen = conn.execute(_SELECT_EVENT_SEEN, (visit.webhook_event_id,)).fetchone()
        found = conn.execute(_SELECT_LAST_GREETED, (store_id, visit.line_user_id)).fetchone()
    last = None if found is None else found[0]
    return ShopperState(event_seen=seen is not None, last_greeted_at=last)


def _record_event_blocking(db: StateDB, row: dict[str, Any]) -> bool:
    """Insert the event's row; False if its webhookEventId is already there (a replay)."""
    with db.transaction() as conn:
        return conn.execute(_INSERT_EVENT, {name: row[name] for name in _EVENT_COLUMNS}).rowcount == 1


def _settle_blocking(
    db: StateDB,
    event_id: str,
    *,
    channel: str | None,
    outcome: str,
    month: str | None,
    greeted: tuple[str, str, str, float] | None,
) -> None:
    """Record how the greeting went; `greeted` = (store, user, greeting, at) starts the cool-down."""
    with db.transaction() as conn:
        conn.execute(_UPDATE_EVENT_OUTCOME, (channel, outcome, month, event_id))
        if greeted is not None:
            conn.execute(_UPSERT_GREETED, greeted)


def _count_rejection_blocking(db: StateDB, reason: Reason, now: float) -> int:
    """Add one to the reason's counter; returns the new count."""
    with db.transaction() as conn:
        conn.execute(_UPSERT_REJECTION, (reason.value, now))
        (count,) = conn.execute(_SELECT_REJECTION_COUNT, (reason.value,)).fetchone()
        return int(count)


def rejection_counts_blocking(db: StateDB) -> dict[str, int]:
    with db.transaction() as conn:
        rows = conn.execute(_SELECT_REJECTION_COUNTS).fetchall()
    return {str(reason): int(count) for reason, count in rows}


def _greeting_pushes_blocking(db: StateDB, greeting: str, month: str) -> int:
    with db.transaction() as conn:
        (count,) = conn.execute(_SELECT_GREETING_PUSHES, (greeting, month)).fetchone()
        return int(count)


# ---------------------------------------------------------------- the handler


class Greeter:
    """Registered as `ctx.services["greeter"]`; the conversion consumer feeds it beacon events."""

    name = "greeting"

    def __init__(self, ctx: MembershipContext) -> None:
        self.ctx = ctx
        self.counts: Counter[str] = Counter()
        self._logged: set[Reason] = set()
        ctx.services[GREETER_SERVICE] = self

    @property
    def config(self) -> MembershipSettings:
        return self.ctx.config

    def setup(self) -> BeaconSetup:
        config = self.config
        return BeaconSetup(
            store_hwid=config.beacon.hwid,
            key=config.binding.key.get_secret_value().encode(),
            greetings=tuple(config.greetings),
            reply_ttl_s=config.coupons.reply_token_ttl_s,
            zone=config.coupons.timezone,
        )

    async def _db(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await asyncio.to_thread(fn, self.ctx.db, *args, **kwargs)

    def _month(self, now: float) -> str:
        return datetime.fromtimestamp(now, ZoneInfo(self.config.coupons.timezone)).strftime("%Y-%m")

    async def handle(self, envelope_data: Mapping[str, Any]) -> GreetOutcome | None:
        """Handle one relayed event; None if it is not a `beacon` event. Raises only for DB
        trouble (the consumer retries the envelope)."""
        parsed = parse_beacon_event(envelope_data)
        if parsed is None:
            return None
        now = self.ctx.wall_clock()
        device = self.config.device
        state = (
            await self._db(_state_blocking, device.store_id, parsed)
            if isinstance(parsed, BeaconVisit)
            else ShopperState(event_seen=False, last_greeted_at=None)
        )
        decision = decide(parsed, state, self.setup(), now)
        if decision.action is Action.REJECT:
            return await self._reject(decision.reason, parsed, now)
        assert isinstance(parsed, BeaconVisit)
        row = {
            "webhook_event_id": parsed.webhook_event_id,
            "store_id": device.store_id,
            "device_id": device.device_id,
            "line_user_id": parsed.line_user_id,
            "hwid": parsed.hwid,
            "type": parsed.type,
            "reason": decision.reason.value,
            "greeting": decision.greeting.name if decision.greeting else None,
            "at": parsed.sent_at or now,
            "recorded_at": now,
        }
        if not await self._db(_record_event_blocking, row):
            return await self._reject(Reason.REPLAYED, parsed, now)  # a copy raced this one
        if parsed.type == "enter":
            await self._fact(FactKind.BEACON_VISIT, parsed, parsed.sent_at or now)
        if decision.action is Action.RECORD:
            outcome = GreetOutcome(reason=decision.reason)
        else:
            outcome = await self._greet(parsed, decision, now)
        self._count(outcome.reason.value)
        log.info(
            "beacon event",
            extra={
                "type": parsed.type,
                "reason": outcome.reason.value,
                "channel": outcome.channel,
                "result": outcome.result,
            },
        )
        return outcome

    async def _reject(self, reason: Reason, parsed: BeaconVisit | Malformed, now: float) -> GreetOutcome:
        assert reason in REJECTIONS
        count = await self._db(_count_rejection_blocking, reason, now)
        self._count(reason.value)
        detail = parsed.why if isinstance(parsed, Malformed) else ""
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning(
                "beacon event ignored (further ones for this reason are only counted)",
                extra={"reason": reason.value, "count": count, "detail": detail},
            )
        return GreetOutcome(reason=reason, detail=detail)

    def _count(self, key: str) -> None:
        self.counts[key] += 1
        detail = ", ".join(f"{n} {what}" for what, n in sorted(self.counts.items()))
        self.ctx.health.set(self.name, Level.GREEN, f"beacon events: {detail}")

    async def _fact(self, kind: FactKind, visit: BeaconVisit, at: float, greeting: str | None = None) -> None:
        """A funnel fact of this visit (one per event: the visit's reference is its order_id)."""
        fact = Fact(
            kind=kind,
            store_id=self.config.device.store_id,
            device_id=self.config.device.device_id,
            at=at,
            order_id=f"visit:{visit.webhook_event_id}",
            line_user_id=visit.line_user_id,
            campaign=greeting,
        )
        try:
            await record_fact(self.ctx, fact)
        except Exception as exc:  # the funnel is a report: never block a greeting on it
            log.error("visit fact not recorded", extra={"kind": kind, "error": str(exc)})

    # ---------------------------------------------------------------- sending

    async def _greet(self, visit: BeaconVisit, decision: Decision, now: float) -> GreetOutcome:
        greeting = decision.greeting
        assert greeting is not None
        coupons = self.ctx.services.get("coupons")
        if coupons is None or not coupons.configured:
            outcome = GreetOutcome(
                reason=decision.reason,
                result="not_configured",
                detail="no LINE channel access token: greeting not sent",
            )
            await self._settle(visit, outcome, greeting, now, greeted=False)
            return outcome
        if greeting.campaign:
            with_coupon = await self._with_coupon(coupons, visit, decision, greeting, now)
            if with_coupon is not None:
                return with_coupon
        if decision.action is Action.REPLY:
            outcome = await self._reply(coupons, visit, decision, greeting)
        else:
            outcome = await self._push(coupons, visit, decision, greeting, now)
        sent = outcome.result in ("sent", "unknown")  # unknown: it may have arrived; no second greeting
        await self._settle(visit, outcome, greeting, now, greeted=sent)
        if outcome.result == "sent":
            await self._fact(  # when greeted: the attribution window starts here
                FactKind.GREETING_REPLIED if outcome.channel == "reply" else FactKind.GREETING_PUSHED,
                visit,
                now,
                greeting.name,
            )
        return outcome

    async def _with_coupon(
        self, coupons: Any, visit: BeaconVisit, decision: Decision, greeting: GreetingConfig, now: float
    ) -> GreetOutcome | None:
        """Greeting and coupon in one request through the coupon ledger; None when the shopper
        gets no coupon this time (already has it, campaign not running): greet with text alone."""
        request = WelcomeRequest(
            line_user_id=visit.line_user_id,
            store_id=self.config.device.store_id,
            device_id=self.config.device.device_id,
            reply_token=visit.reply_token if decision.action is Action.REPLY else None,
            reply_token_received_at=visit.received_at if decision.action is Action.REPLY else None,
            campaign=greeting.campaign,
            lead_messages=tuple(greeting_messages(greeting)),
            push_allowed=greeting.push_fallback,
        )
        result = await coupons.deliver(request)
        status = result.status
        if status in (DeliveryStatus.DUPLICATE, DeliveryStatus.SKIPPED):
            return None
        channel, outcome_name = {
            DeliveryStatus.REPLIED: ("reply", "sent"),
            DeliveryStatus.QUEUED: ("push", "queued"),
            DeliveryStatus.UNKNOWN: ("reply", "unknown"),
            DeliveryStatus.DEAD: ("reply", "failed"),
            DeliveryStatus.NOT_SENT: ("reply", "not_sent"),
        }[status]
        outcome = GreetOutcome(
            reason=decision.reason,
            channel=channel,
            result=outcome_name,
            detail=f"with a {greeting.campaign} coupon" + (f": {result.detail}" if result.detail else ""),
        )
        greeted = outcome_name in ("sent", "queued", "unknown")
        await self._settle(visit, outcome, greeting, now, greeted=greeted)
        if outcome_name == "sent":
            await self._fact(FactKind.GREETING_REPLIED, visit, now, greeting.name)
        # queued: the coupons service pushes it and counts that message as its coupon_pushed
        return outcome

    async def _reply(
        self, coupons: Any, visit: BeaconVisit, decision: Decision, greeting: GreetingConfig
    ) -> GreetOutcome:
        assert visit.reply_token is not None
        line = await coupons.line()
        ambiguous = False
        for _ in range(_REPLY_ATTEMPTS):
            answer = await line.reply(visit.reply_token, greeting_messages(greeting))
            outcome = classify(answer)
            if outcome is Outcome.SENT or (outcome is Outcome.INVALID_REPLY_TOKEN and ambiguous):
                return GreetOutcome(reason=decision.reason, channel="reply", result="sent")
            if outcome is Outcome.UNKNOWN:
                ambiguous = True
                continue
            if outcome is Outcome.RATE_LIMITED:
                await asyncio.sleep(0.2)
                continue
            return GreetOutcome(
                reason=decision.reason,
                channel="reply",
                result="failed",
                detail=f"{answer.status} {answer.message}".strip(),
            )
        return GreetOutcome(
            reason=decision.reason,
            channel="reply",
            result="unknown" if ambiguous else "failed",
            detail="no answer from LINE",
        )

    async def _push(
        self, coupons: Any, visit: BeaconVisit, decision: Decision, greeting: GreetingConfig, now: float
    ) -> GreetOutcome:
        line = await coupons.line()
        month = self._month(now)
        pushes = await self._db(_greeting_pushes_blocking, greeting.name, month)
        try:
            quota = await line.quota()
        except Exception as exc:  # the quota must be known before a paid message
            return GreetOutcome(
                reason=decision.reason, channel="push", result="held", detail=f"quota unknown: {exc}"
            )
        verdict = budget_verdict(
            Budget(
                campaign_pushes=pushes,
                campaign_budget=greeting.monthly_budget,
                quota_limited=quota.limited,
                quota_value=quota.value,
                quota_used=quota.used,
            )
        )
        if verdict is not BudgetVerdict.ALLOW:
            why = (
                f"greeting budget of {greeting.monthly_budget} pushes spent for {month}"
                if verdict is BudgetVerdict.OVER_BUDGET
                else f"account quota spent ({quota.used}/{quota.value})"
            )
            return GreetOutcome(reason=decision.reason, channel="push", result="held", detail=why)
        key = str(uuid.uuid4())
        for _ in range(_PUSH_ATTEMPTS):
            answer = await line.push(visit.line_user_id, greeting_messages(greeting), key)
            outcome = classify(answer)
            if outcome in (Outcome.SENT, Outcome.ALREADY_SENT):
                return GreetOutcome(reason=decision.reason, channel="push", result="sent")
            if outcome in (Outcome.UNKNOWN, Outcome.RATE_LIMITED):
                await asyncio.sleep(0.5)
                continue
            if outcome is Outcome.MONTHLY_LIMIT:
                return GreetOutcome(
                    reason=decision.reason,
                    channel="push",
                    result="held",
                    detail="LINE monthly message limit reached",
                )
            return GreetOutcome(
                reason=decision.reason,
                channel="push",
                result="failed",
                detail=f"{answer.status} {answer.message}".strip(),
            )
        return GreetOutcome(
            reason=decision.reason, channel="push", result="unknown", detail="no answer from LINE"
        )

    async def _settle(
        self,
        visit: BeaconVisit,
        outcome: GreetOutcome,
        greeting: GreetingConfig,
        now: float,
        *,
        greeted: bool,
    ) -> None:
        await self._db(
            _settle_blocking,
            visit.webhook_event_id,
            channel=outcome.channel,
            outcome=outcome.result or "",
            month=self._month(now),
            greeted=(self.config.device.store_id, visit.line_user_id, greeting.name, now)
            if greeted
            else None,
        )
