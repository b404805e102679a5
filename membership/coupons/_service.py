"""Welcome-coupon delivery: the imperative shell around `_policy` and `_ledger`.

Owns `deliver_welcome` (claim the user's ledger row, reply while the reply token is fresh, else
queue a push on the private outbox stream `coupon_job`) and the `CouponService` component: its
LINE client and token, the repair of rows a crash left half-way at start, and its health. The
draining of `coupon_job` (budget and quota, the push, what each answer means) is `_push_jobs`.

Exactly one coupon per user and campaign rests on three things: the ledger's primary key (a
second conversion finds the row and stops), the retry key fixed at claim time (a resend after a
lost answer or a crash gets 409, recorded as sent), and never pushing after a reply whose
outcome is unknown (that row ends `unknown`, counted, not resent).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar

from base.health import Level
from membership.config import CampaignConfig
from membership.context import MembershipContext, MembershipSettings, SettingsStore
from membership.coupons._events import offer_coupon_event
from membership.coupons._funnel import Fact, FactKind, insert_facts
from membership.coupons._ledger import (
    LedgerRow,
    LedgerState,
    campaign_stop_blocking,
    claim_blocking,
    get_blocking,
    release_blocking,
    rows_in_states_blocking,
    transition_blocking,
)
from membership.coupons._line_http import CouponsError, LineMessaging, LineRefused, Quota
from membership.coupons._policy import (
    Outcome,
    campaign_active,
    classify,
    coupon_create_request,
    coupon_messages,
    local_day,
    local_month,
    make_code,
    reply_is_fresh,
)
from membership.coupons._push_jobs import PUSH_STREAM, SERVICE_NAME, OutboxLike, PushJobs
from offline_queue import Durability

__all__ = [
    "PUSH_STREAM",
    "CouponService",
    "DeliveryResult",
    "DeliveryStatus",
    "OutboxLike",
    "ServiceNotRunning",
    "WelcomeRequest",
    "deliver_welcome",
    "record_fact",
    "record_facts",
]

log = logging.getLogger(__name__)

_LINE_USER_ID = re.compile(r"U[0-9a-f]{32}")
_REPLY_ATTEMPTS = 3  # within the reply token's freshness; a 4th would rarely still be fresh
_T = TypeVar("_T")


class ServiceNotRunning(CouponsError):
    """The agent did not start what coupons need (the coupons service or the outbox): wiring."""


@dataclass(frozen=True, kw_only=True)
class WelcomeRequest:
    """A shopper who earns a campaign's coupon: the welcome coupon of the binding flow, or the
    coupon a beacon greeting carries (`lead_messages` go first in the same message request,
    and without `push_allowed` the coupon goes only by reply)."""

    line_user_id: str
    store_id: str
    device_id: str
    order_id: str | None = None
    reply_token: str | None = None
    reply_token_received_at: float | None = None  # wall clock
    is_new_friend: bool = False
    campaign: str = "welcome"
    lead_messages: tuple[dict[str, Any], ...] = ()
    push_allowed: bool = True

    def __post_init__(self) -> None:
        if not _LINE_USER_ID.fullmatch(self.line_user_id):
            raise ValueError(f"line_user_id must be U and 32 hex digits, got {self.line_user_id!r}")
        if self.reply_token is not None and self.reply_token_received_at is None:
            raise ValueError("reply_token needs reply_token_received_at")


class DeliveryStatus(StrEnum):
    REPLIED = "replied"  # delivered free as a reply
    QUEUED = "queued"  # a push is queued on the outbox
    DUPLICATE = "duplicate"  # this user already has (or is getting) this campaign's coupon
    SKIPPED = "skipped"  # no active welcome campaign
    DEAD = "dead"  # LINE refused it for good (reason in detail)
    UNKNOWN = "unknown"  # a reply may have been delivered; not resent
    NOT_SENT = "not_sent"  # the reply did not go out and no push was allowed: claim given back


@dataclass(frozen=True, kw_only=True)
class DeliveryResult:
    status: DeliveryStatus
    campaign: str | None = None
    code: str | None = None
    detail: str = ""


def deliver_welcome(ctx: MembershipContext, conversion: WelcomeRequest) -> Awaitable[DeliveryResult]:
    """Give the converted shopper the welcome coupon once (the entry point for the binding flow)."""
    service = ctx.services.get(SERVICE_NAME)
    if not isinstance(service, CouponService):
        raise ServiceNotRunning("the coupons service is not running (ctx.services['coupons'] is missing)")
    return service.deliver(conversion)


async def record_fact(ctx: MembershipContext, fact: Fact) -> bool:
    """Record a funnel fact (payments, binding QRs, friends, members...) from any capability;
    True when new. Idempotent: the same fact recorded twice counts once."""
    (new,) = await record_facts(ctx, [fact])
    return new


async def record_facts(ctx: MembershipContext, facts: Sequence[Fact]) -> list[bool]:
    """`record_fact` for several facts of one moment (a sale's), in one transaction (in the
    daemon, on the state DB's one writer: a sale's facts share its group commit)."""
    return await ctx.db.write(functools.partial(insert_facts, facts=facts))


class CouponService(PushJobs):
    """Component `coupons`: delivers welcome coupons and drains the `coupon_job` stream."""

    name = SERVICE_NAME

    def __init__(
        self,
        ctx: MembershipContext,
        *,
        outbox: OutboxLike | None = None,
        poll_interval: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        token_source: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        """`token_source`, when given, issues a fresh channel access token after a 401 (e.g.
        LINE's stateless tokens); without it a 401 only alerts and retries later."""
        self.ctx = ctx
        self.config: MembershipSettings = ctx.config
        self._outbox = outbox
        self._poll_interval = poll_interval
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._line: LineMessaging | None = None
        self._line_lock = asyncio.Lock()
        self._token_source = token_source
        self._access_token = ctx.config.line.channel_access_token.get_secret_value()
        self._quota: tuple[float, Quota] | None = None
        self._coupon_ids: dict[str, str] = {}
        self._pause_until = 0.0  # wall clock; see `_retry`
        self._stopped: tuple[str, str] | None = None  # (month, health detail) of a stopped campaign
        ctx.services[SERVICE_NAME] = self

    # ---------------------------------------------------------------- plumbing

    @property
    def outbox(self) -> OutboxLike:
        outbox = self._outbox or self.ctx.services.get("outbox")
        if outbox is None:
            raise ServiceNotRunning("no outbox: ctx.services['outbox'] is missing")
        return outbox  # type: ignore[no-any-return]

    async def _db(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await asyncio.to_thread(fn, self.ctx.db, *args, **kwargs)

    async def line(self) -> LineMessaging:
        """The Messaging API client, created on first use inside the running loop."""
        async with self._line_lock:
            if self._line is None:
                line = LineMessaging(
                    api_base=self.config.line.api_base,
                    access_token=self._access_token,
                    timeout=self.config.timeouts.line_api,
                )
                self._line = await line.__aenter__()
            return self._line

    async def _refresh_token(self) -> bool:
        """After a 401: take a new token from `token_source`; True if there is a new one to try."""
        if self._token_source is None:
            self._alert_token()
            return False
        try:
            token = await self._token_source()
        except Exception as exc:  # the source is pluggable: any failure means "no new token"
            log.error("channel access token refresh failed", extra={"error": repr(exc)})
            token = ""
        if not token or token == self._access_token:
            self._alert_token()
            return False
        async with self._line_lock:
            old, self._line, self._access_token = self._line, None, token
        if old is not None:
            await old.close()
        log.info("channel access token refreshed after a 401")
        return True

    async def aclose(self) -> None:
        if self._line is not None:
            await self._line.close()
            self._line = None

    def _now(self) -> float:
        return self.ctx.wall_clock()

    def _campaign(self, name: str) -> CampaignConfig | None:
        return next((c for c in self.config.campaigns if c.name == name), None)

    async def _fact(self, kind: FactKind, row: LedgerRow, at: float) -> None:
        fact = Fact(
            kind=kind,
            store_id=row.store_id,
            device_id=row.device_id,
            at=at,
            order_id=row.order_id,
            line_user_id=row.line_user_id,
            campaign=row.campaign,
        )
        if await record_fact(self.ctx, fact):
            await offer_coupon_event(self._outbox or self.ctx.services.get("outbox"), fact)

    async def _coupon_id(self, campaign: CampaignConfig) -> str:
        """The LINE coupon to attach: configured, or created once via the coupon API (kept in the
        settings table), or "" for the Flex card alone when the API is off or refuses."""
        if campaign.coupon_id or not campaign.coupon_api or not self.configured:
            return campaign.coupon_id
        if campaign.name in self._coupon_ids:
            return self._coupon_ids[campaign.name]
        key = f"coupons.line_coupon_id.{campaign.name}"
        settings: SettingsStore = self.ctx.services["settings"]
        stored = await asyncio.to_thread(settings.get_setting_blocking, key)
        if stored is None:
            try:
                body = coupon_create_request(campaign, now=self._now(), zone=self.config.coupons.timezone)
                stored = await (await self.line()).create_coupon(body)
            except (LineRefused, ValueError) as exc:
                log.warning("LINE coupon not created; sending the Flex card alone", extra={"error": str(exc)})
                return ""
            await asyncio.to_thread(settings.put_setting_blocking, key, stored)
            log.info("LINE coupon created", extra={"campaign": campaign.name, "coupon_id": stored})
        self._coupon_ids[campaign.name] = stored
        return stored

    async def _messages(self, campaign: CampaignConfig, row: LedgerRow) -> list[dict[str, Any]]:
        coupon_id = await self._coupon_id(campaign)
        if coupon_id != campaign.coupon_id:
            campaign = campaign.model_copy(update={"coupon_id": coupon_id})
        valid_until = local_day(row.created_at, self.config.coupons.timezone) + timedelta(
            days=campaign.valid_days
        )
        return coupon_messages(
            campaign, row.code, valid_until=valid_until, barcode_url=self.config.coupons.barcode_url
        )

    # ---------------------------------------------------------------- delivery

    async def deliver(self, req: WelcomeRequest) -> DeliveryResult:
        now = self._now()
        campaign = self._campaign(req.campaign)
        zone = self.config.coupons.timezone
        if campaign is None or not campaign_active(campaign, local_day(now, zone)):
            return DeliveryResult(status=DeliveryStatus.SKIPPED, detail=f"no active {req.campaign} campaign")
        ttl = self.config.coupons.reply_token_ttl_s
        can_reply = (
            self.configured
            and bool(req.reply_token)
            and reply_is_fresh(req.reply_token_received_at, now, ttl)
        )
        if not can_reply and not req.push_allowed:
            return DeliveryResult(
                status=DeliveryStatus.NOT_SENT, campaign=campaign.name, detail="no fresh reply token; no push"
            )
        row = await self._claim(campaign, req, now)
        if row is None:
            existing = await self._db(get_blocking, campaign.name, req.line_user_id)
            if existing is not None and can_reply and existing.state is LedgerState.QUEUED:
                # Its push has not been tried yet: a free reply now replaces it (the worker finds
                # the row settled, or back in `queued` if the reply did not go out).
                taken = await self._db(
                    transition_blocking,
                    campaign.name,
                    req.line_user_id,
                    from_states=(LedgerState.QUEUED,),
                    to_state=LedgerState.REPLYING,
                    now=now,
                    unattempted=True,
                    reply_token=req.reply_token,
                )
                if taken:
                    return await self._reply_or_push(campaign, existing, req)
            return DeliveryResult(
                status=DeliveryStatus.DUPLICATE,
                campaign=campaign.name,
                code=existing.code if existing else None,
                detail=f"already {existing.state if existing else '?'}",
            )
        if can_reply:
            await self._db(
                transition_blocking,
                campaign.name,
                row.line_user_id,
                from_states=(LedgerState.CLAIMED,),
                to_state=LedgerState.REPLYING,
                now=self._now(),
            )
            return await self._reply_or_push(campaign, row, req)
        messages = [*req.lead_messages, *await self._messages(campaign, row)]
        return await self._queue_push(campaign, row, messages, from_states=(LedgerState.CLAIMED,))

    async def _reply_or_push(
        self, campaign: CampaignConfig, row: LedgerRow, req: WelcomeRequest
    ) -> DeliveryResult:
        """The row is `replying`: reply, or queue the push when the reply certainly did not go out
        (or, when pushing is not allowed, give the claim back)."""
        messages = [*req.lead_messages, *await self._messages(campaign, row)]
        result = await self._reply(campaign, row, req, messages)
        if result is not None:
            return result
        if not req.push_allowed:
            await self._db(release_blocking, campaign.name, row.line_user_id, from_state=LedgerState.REPLYING)
            return DeliveryResult(
                status=DeliveryStatus.NOT_SENT,
                campaign=campaign.name,
                detail="the reply did not go out; no push",
            )
        return await self._queue_push(campaign, row, messages, from_states=(LedgerState.REPLYING,))

    async def _claim(self, campaign: CampaignConfig, req: WelcomeRequest, now: float) -> LedgerRow | None:
        """The user's fresh ledger row, or None if they already have one for this campaign."""
        for _ in range(5):  # a code or retry-key collision (2**-45) only needs a redraw
            won, row = await self._db(
                claim_blocking,
                campaign=campaign.name,
                line_user_id=req.line_user_id,
                code=make_code(),
                retry_key=str(uuid.uuid4()),
                store_id=req.store_id,
                device_id=req.device_id,
                order_id=req.order_id,
                reply_token=req.reply_token,
                now=now,
            )
            if row is not None:
                return row if won else None
        raise RuntimeError("could not draw a unique coupon code in 5 tries")

    async def _reply(
        self, campaign: CampaignConfig, row: LedgerRow, req: WelcomeRequest, messages: list[dict[str, Any]]
    ) -> DeliveryResult | None:
        """Try the free reply; None means "not sent, push instead"."""
        assert req.reply_token is not None
        key = (campaign.name, row.line_user_id)
        line = await self.line()
        ambiguous = False
        ttl = self.config.coupons.reply_token_ttl_s
        for attempt in range(_REPLY_ATTEMPTS):
            if not reply_is_fresh(req.reply_token_received_at, self._now(), ttl):
                break
            answer = await line.reply(req.reply_token, messages)
            outcome = classify(answer)
            now = self._now()
            log.info(
                "coupon reply",
                extra={
                    "campaign": campaign.name,
                    "outcome": outcome.value,
                    "status": answer.status,
                    "attempt": attempt,
                },
            )
            if outcome is Outcome.SENT or (outcome is Outcome.INVALID_REPLY_TOKEN and ambiguous):
                # After an unanswered attempt, a still-fresh token that LINE calls invalid was
                # consumed by that attempt: the coupon was delivered.
                return await self._mark_replied(
                    campaign, row, answer.request_id, now, inferred=answer.status != 200
                )
            if outcome is Outcome.UNKNOWN:
                if not ambiguous:
                    ambiguous = True
                    await self._db(
                        transition_blocking,
                        *key,
                        from_states=(LedgerState.REPLYING,),
                        to_state=LedgerState.REPLYING,
                        now=now,
                        reply_ambiguous=True,
                    )
                continue
            if outcome is Outcome.RATE_LIMITED:
                await self._sleep(0.2)
                continue
            if outcome is Outcome.UNAUTHORIZED:
                if await self._refresh_token():
                    line = await self.line()
                    continue
                break
            if outcome is Outcome.INVALID_REPLY_TOKEN:
                break  # expired or used before we tried: nothing was sent, push instead
            await self._db(
                transition_blocking,
                *key,
                from_states=(LedgerState.REPLYING,),
                to_state=LedgerState.DEAD,
                now=now,
                error=f"reply {answer.status}: {answer.message}",
            )
            return DeliveryResult(
                status=DeliveryStatus.DEAD,
                campaign=campaign.name,
                code=row.code,
                detail=f"LINE refused the reply: {answer.status} {answer.message}",
            )
        if ambiguous:
            await self._db(
                transition_blocking,
                *key,
                from_states=(LedgerState.REPLYING,),
                to_state=LedgerState.UNKNOWN,
                now=self._now(),
                error="reply outcome unknown; not pushed to avoid a second coupon",
            )
            return DeliveryResult(
                status=DeliveryStatus.UNKNOWN,
                campaign=campaign.name,
                code=row.code,
                detail="the reply went unanswered; it may have been delivered, so no push follows",
            )
        return None

    async def _mark_replied(
        self, campaign: CampaignConfig, row: LedgerRow, request_id: str | None, now: float, *, inferred: bool
    ) -> DeliveryResult:
        await self._db(
            transition_blocking,
            campaign.name,
            row.line_user_id,
            from_states=(LedgerState.REPLYING,),
            to_state=LedgerState.SENT,
            now=now,
            channel="reply",
            sent_at=now,
            month=local_month(now, self.config.coupons.timezone),
            request_id=request_id,
            error="delivery inferred from the consumed reply token" if inferred else None,
        )
        await self._fact(FactKind.COUPON_REPLIED, row, now)
        return DeliveryResult(status=DeliveryStatus.REPLIED, campaign=campaign.name, code=row.code)

    async def _queue_push(
        self,
        campaign: CampaignConfig,
        row: LedgerRow,
        messages: list[dict[str, Any]],
        *,
        from_states: tuple[LedgerState, ...],
    ) -> DeliveryResult:
        await self._db(
            transition_blocking,
            campaign.name,
            row.line_user_id,
            from_states=(*from_states, LedgerState.QUEUED),
            to_state=LedgerState.QUEUED,
            now=self._now(),
        )
        await self.outbox.put(
            PUSH_STREAM,
            {
                "campaign": campaign.name,
                "line_user_id": row.line_user_id,
                "retry_key": row.retry_key,
                "messages": messages,
            },
            durability=Durability.CRITICAL,
            dedupe_key=f"coupon:{campaign.name}:{row.line_user_id}",
        )
        self._wake.set()
        return DeliveryResult(status=DeliveryStatus.QUEUED, campaign=campaign.name, code=row.code)

    # ---------------------------------------------------------------- recovery

    async def recover(self) -> int:
        """Finish rows a crash left half-way; returns how many were touched.

        `claimed`: nothing was sent yet -> queue the push. `queued`: re-put on the outbox (its
        dedupe key makes that a no-op when the record is still there). `replying`: the reply may
        have left, and a reply has no retry key. If the token may still be fresh it is tried once
        more: LINE accepts it only if the first attempt never arrived, so that delivers exactly
        one coupon; any other answer ends `unknown` (never a second coupon).
        """
        rows = await self._db(
            rows_in_states_blocking, (LedgerState.CLAIMED, LedgerState.REPLYING, LedgerState.QUEUED)
        )
        for row in rows:
            campaign = self._campaign(row.campaign)
            if campaign is None:
                continue
            messages = await self._messages(campaign, row)
            if row.state is not LedgerState.REPLYING:
                await self._queue_push(campaign, row, messages, from_states=(row.state,))
                continue
            now = self._now()
            # created_at is when the conversion reached us, no earlier than the token's webhook.
            if (
                row.reply_token
                and self.configured
                and reply_is_fresh(row.created_at, now, self.config.coupons.reply_token_ttl_s)
            ):
                answer = await (await self.line()).reply(row.reply_token, messages)
                if classify(answer) is Outcome.SENT:
                    await self._mark_replied(campaign, row, answer.request_id, self._now(), inferred=False)
                    continue
            await self._db(
                transition_blocking,
                row.campaign,
                row.line_user_id,
                from_states=(LedgerState.REPLYING,),
                to_state=LedgerState.UNKNOWN,
                now=self._now(),
                error="interrupted during the reply; not pushed to avoid a second coupon",
            )
        return len(rows)

    # ---------------------------------------------------------------- push worker

    @property
    def configured(self) -> bool:
        """False until `line.channel_access_token` is set: coupons queue but nothing is sent."""
        return bool(self.config.line.channel_access_token.get_secret_value())

    async def run(self) -> None:
        try:
            await self.recover()
            if not self.configured:
                self.ctx.health.set(
                    self.name, Level.AMBER, "line.channel_access_token is not set: coupons wait in the outbox"
                )
                await asyncio.Event().wait()  # nothing can be sent until the config is fixed
            month = local_month(self._now(), self.config.coupons.timezone)
            for campaign in self.config.campaigns:
                reason = await self._db(campaign_stop_blocking, campaign.name, month)
                if reason is not None:
                    self._stopped = (month, f"campaign {campaign.name} stopped for {month}: {reason}")
            self._healthy(month)
            while True:
                handled = await self.drain_once()
                if handled == 0:
                    self._wake.clear()
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancel that
                    # lands together with the wake-up, and shutdown would hang.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_interval):
                            await self._wake.wait()
        finally:
            await self.aclose()

    def _healthy(self, month: str) -> None:
        """Green after a success, unless a campaign is stopped this month (that stays amber)."""
        if self._stopped is not None and self._stopped[0] == month:
            self.ctx.health.set(self.name, Level.AMBER, self._stopped[1])
        else:
            self.ctx.health.set(self.name, Level.GREEN, "delivering")

    def _alert_token(self) -> None:
        self.ctx.health.set(
            self.name,
            Level.RED,
            "LINE rejected the channel access token (401): re-issue line.channel_access_token",
        )
        log.error("LINE channel access token rejected (401)")
