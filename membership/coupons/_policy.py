"""Welcome-coupon delivery policy: pure decisions over data, no I/O, no clock, no asyncio.

Owns which campaign applies, whether a reply token is still worth trying, how a Messaging API
answer is classified (the 429 rate limit and the monthly limit differ only by their message),
what each outcome makes the delivery do (`PUSH_ACTIONS`, one table), whether the budget allows
another push, the coupon code format and the message a shopper receives.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from membership.config import CampaignConfig
from membership.context import MembershipSettings
from membership.coupons._barcode import barcode_box

__all__ = [
    "CODE_ALPHABET",
    "PUSH_ACTIONS",
    "RETRY_KEY_SAFE_S",
    "Answer",
    "Budget",
    "BudgetVerdict",
    "Outcome",
    "PushAction",
    "budget_verdict",
    "campaign_active",
    "classify",
    "coupon_create_request",
    "coupon_messages",
    "local_day",
    "local_month",
    "make_code",
    "normalize_code",
    "reply_is_fresh",
    "welcome_campaign",
]

# LINE remembers a retry key for 24 h from the first request; past that a resend could deliver a
# second coupon, so retries stop one hour earlier (slack for clock drift and a long last attempt).
RETRY_KEY_SAFE_S = 23 * 3600.0

# Crockford base32 without I, L, O, U: nothing a cashier can misread, typed or scanned.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_BODY = 9
MONTHLY_LIMIT_MESSAGE = "You have reached your monthly limit."
INVALID_REPLY_TOKEN = "Invalid reply token"  # noqa: S105 (an error message, not a secret)


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What one Messaging API call came back with; status 0 = no answer (timeout, network)."""

    status: int
    message: str = ""
    request_id: str | None = None
    accepted_request_id: str | None = None


class Outcome(StrEnum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"  # 409: the retry key was accepted before
    UNKNOWN = "unknown"  # 5xx or no answer: LINE may or may not have sent it
    RATE_LIMITED = "rate_limited"
    MONTHLY_LIMIT = "monthly_limit"
    UNAUTHORIZED = "unauthorized"
    INVALID_REPLY_TOKEN = "invalid_reply_token"  # noqa: S105 (an outcome name)
    REJECTED = "rejected"  # 400/403/404...: resending the same request cannot succeed


def classify(answer: Answer) -> Outcome:
    """Map an answer to an outcome, reading the message where LINE overloads the status code."""
    status = answer.status
    if 200 <= status < 300:
        return Outcome.SENT
    if status == 409:
        return Outcome.ALREADY_SENT
    if status == 0 or status >= 500:
        return Outcome.UNKNOWN
    if status == 429:
        if answer.message.strip().lower() == MONTHLY_LIMIT_MESSAGE.lower():
            return Outcome.MONTHLY_LIMIT
        return Outcome.RATE_LIMITED
    if status == 401:
        return Outcome.UNAUTHORIZED
    if status == 400 and answer.message == INVALID_REPLY_TOKEN:
        return Outcome.INVALID_REPLY_TOKEN
    return Outcome.REJECTED


class PushAction(StrEnum):
    MARK_SENT = "mark_sent"  # record in the ledger, then ack the outbox record
    RETRY = "retry"  # release with backoff, same retry key
    STOP_CAMPAIGN = "stop_campaign"  # monthly limit: stop pushing this month, alert, dead-letter
    ALERT_RETRY = "alert_retry"  # 401: mark health red, retry later with the same key
    DEAD_LETTER = "dead_letter"  # 400/403: never resend; keep the reason


PUSH_ACTIONS: dict[Outcome, PushAction] = {
    Outcome.SENT: PushAction.MARK_SENT,
    Outcome.ALREADY_SENT: PushAction.MARK_SENT,
    Outcome.UNKNOWN: PushAction.RETRY,
    Outcome.RATE_LIMITED: PushAction.RETRY,
    Outcome.MONTHLY_LIMIT: PushAction.STOP_CAMPAIGN,
    Outcome.UNAUTHORIZED: PushAction.ALERT_RETRY,
    Outcome.INVALID_REPLY_TOKEN: PushAction.DEAD_LETTER,  # never expected from push
    Outcome.REJECTED: PushAction.DEAD_LETTER,
}


class BudgetVerdict(StrEnum):
    ALLOW = "allow"
    OVER_BUDGET = "over_budget"  # the campaign's own monthly budget is spent
    OVER_QUOTA = "over_quota"  # the account's monthly message quota is spent


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What is known before a push: this campaign's pushes this month and the account quota."""

    campaign_pushes: int
    campaign_budget: int
    quota_limited: bool
    quota_value: int
    quota_used: int


def budget_verdict(budget: Budget) -> BudgetVerdict:
    if budget.campaign_pushes >= budget.campaign_budget:
        return BudgetVerdict.OVER_BUDGET
    if budget.quota_limited and budget.quota_used >= budget.quota_value:
        return BudgetVerdict.OVER_QUOTA
    return BudgetVerdict.ALLOW


def welcome_campaign(config: MembershipSettings) -> CampaignConfig | None:
    """The enabled campaign named "welcome", if any."""
    for campaign in config.campaigns:
        if campaign.name == "welcome" and campaign.enabled:
            return campaign
    return None


def campaign_active(campaign: CampaignConfig, day: date) -> bool:
    """Enabled and `day` within [starts, ends] (inclusive, local days; empty = unbounded)."""
    if not campaign.enabled:
        return False
    if campaign.starts and day < date.fromisoformat(campaign.starts):
        return False
    return not (campaign.ends and day > date.fromisoformat(campaign.ends))


def local_day(ts: float, zone: str) -> date:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).date()


def local_month(ts: float, zone: str) -> str:
    return local_day(ts, zone).strftime("%Y-%m")


def reply_is_fresh(received_at: float | None, now: float, ttl: float) -> bool:
    """A reply token is tried only while younger than `ttl` (and never from the future)."""
    return received_at is not None and 0 <= now - received_at < ttl


def _check_char(body: str) -> str:
    # Odd weights are invertible mod 32, so any single mistyped character changes the check.
    total = sum((2 * i + 1) * CODE_ALPHABET.index(ch) for i, ch in enumerate(body))
    return CODE_ALPHABET[total % len(CODE_ALPHABET)]


def make_code(entropy: bytes | None = None) -> str:
    """A 10-character coupon code: 9 random Crockford digits (45 bits) and a check digit."""
    raw = int.from_bytes(entropy if entropy is not None else secrets.token_bytes(6), "big")
    body = ""
    for _ in range(_CODE_BODY):
        raw, digit = divmod(raw, len(CODE_ALPHABET))
        body += CODE_ALPHABET[digit]
    return body + _check_char(body)


def normalize_code(text: str) -> str | None:
    """The canonical code for what a cashier scanned or typed, or None if it cannot be one.

    Case, spaces and hyphens are ignored; O reads as 0 and I/L as 1 (Crockford); a wrong
    check digit (a typo) returns None instead of looking up someone else's code.
    """
    cleaned = text.strip().upper().replace("-", "").replace(" ", "")
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    if len(cleaned) != _CODE_BODY + 1 or any(ch not in CODE_ALPHABET for ch in cleaned):
        return None
    body, check = cleaned[:-1], cleaned[-1]
    return cleaned if _check_char(body) == check else None


def coupon_messages(
    campaign: CampaignConfig, code: str, *, valid_until: date, barcode_url: str = ""
) -> list[dict[str, Any]]:
    """The welcome message(s): a LINE coupon when the campaign has one, and always a Flex card
    with the shopper's unique code and its Code 128 barcode (what the till scans): an image from
    `barcode_url` when the shop has one, else bars drawn with Flex boxes. One request carries
    both messages and costs one message."""
    display = f"{code[:5]}-{code[5:]}"
    body: list[dict[str, Any]] = [
        {"type": "text", "text": campaign.title, "weight": "bold", "size": "lg", "wrap": True},
        {"type": "text", "text": campaign.offer, "wrap": True, "size": "md"},
        {"type": "text", "text": display, "weight": "bold", "size": "xxl", "align": "center"},
        {"type": "text", "text": f"有效期限 Valid until {valid_until.isoformat()}", "size": "sm"},
        {"type": "text", "text": "結帳時出示此畫面 Show this at the counter", "size": "sm", "wrap": True},
    ]
    bubble: dict[str, Any] = {
        "type": "bubble",
        "body": {"type": "box", "layout": "vertical", "spacing": "md", "contents": body},
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {
                    "type": "button",
                    "action": {"type": "clipboard", "label": "複製優惠碼 Copy code", "clipboardText": code},
                }
            ],
        },
    }
    if not barcode_url:  # no image host: draw the barcode with Flex boxes
        body.insert(2, barcode_box(code))
    else:
        bubble["hero"] = {
            "type": "image",
            "url": barcode_url.replace("{code}", code),
            "size": "full",
            "aspectRatio": "3:1",
            "aspectMode": "fit",
            "animated": False,
        }
    messages: list[dict[str, Any]] = []
    if campaign.coupon_id:
        messages.append({"type": "coupon", "couponId": campaign.coupon_id, "deliveryTag": campaign.name})
    messages.append({"type": "flex", "altText": f"{campaign.title}: {display}", "contents": bubble})
    return messages


# LINE's coupon API takes its own timezone names; the shop zones ShopEdge is sold in.
_COUPON_ZONES = {"Asia/Taipei": "ASIA_TAIPEI", "Asia/Tokyo": "ASIA_TOKYO", "Asia/Bangkok": "ASIA_BANGKOK"}


def coupon_create_request(campaign: CampaignConfig, *, now: float, zone: str) -> dict[str, Any]:
    """The `POST /v2/bot/coupon` body for a campaign: one use per ticket, a fixed discount, from
    the campaign's start (or now) until its end plus `valid_days` (or a year from now).

    Raises:
        ValueError: the shop's zone has no LINE coupon timezone here.
    """
    if zone not in _COUPON_ZONES:
        raise ValueError(f"no LINE coupon timezone for {zone!r} (known: {', '.join(_COUPON_ZONES)})")
    tz = ZoneInfo(zone)
    start = (
        datetime.combine(date.fromisoformat(campaign.starts), time(), tz).timestamp()
        if campaign.starts
        else now
    )
    if campaign.ends:
        last = date.fromisoformat(campaign.ends) + timedelta(days=campaign.valid_days + 1)
        end = datetime.combine(last, time(), tz).timestamp()
    else:
        end = now + 366 * 86400
    return {
        "title": campaign.title[:60],
        "description": campaign.offer,
        "usageCondition": "限本店結帳使用 For use at our counter",
        "startTimestamp": int(min(start, now)),
        "endTimestamp": int(end),
        "timezone": _COUPON_ZONES[zone],
        "visibility": "UNLISTED",
        "maxUseCountPerTicket": 1,
        "acquisitionCondition": {"type": "normal"},
        "reward": {"type": "discount", "priceInfo": {"type": "fixed", "fixedAmount": campaign.discount_twd}},
    }
