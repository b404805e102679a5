"""The membership room's config sections: `[line]`, `[binding]`, `[[campaigns]]`, `[coupons]`,
`[[greetings]]`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator

from base.config import Section, check_timezone

__all__ = [
    "BindingConfig",
    "CampaignConfig",
    "CouponsConfig",
    "GreetingConfig",
    "LineConfig",
    "TagRuleConfig",
]


class LineConfig(Section):
    """LINE Official Account (Messaging API) credentials and identity."""

    api_base: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")] | None = None
    channel_access_token: SecretStr = SecretStr("")
    channel_secret: SecretStr = SecretStr("")
    oa_basic_id: Annotated[str, Field(pattern=r"^(@?[0-9a-z._-]{3,32})?$")] = ""
    liff_id: Annotated[str, Field(pattern=r"^([0-9]{10}-[A-Za-z0-9]{8})?$")] = ""

    @field_validator("oa_basic_id")
    @classmethod
    def _strip_at(cls, value: str) -> str:
        return value.removeprefix("@")


class BindingConfig(Section):
    """Membership-binding tokens shown as a QR after payment."""

    key: SecretStr = SecretStr("")
    ttl_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 1800
    phone_salt: SecretStr = SecretStr("")
    # When the display cannot say what it shows: "joined" only while the QR is this young.
    joined_window_s: Annotated[float, Field(gt=0, le=3600)] = 120.0


class CampaignConfig(Section):
    """A coupon campaign (the welcome coupon is the one every store has)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")] = "welcome"
    enabled: bool = True
    coupon_id: str = ""
    title: str = "歡迎禮 Welcome gift"
    starts: str = ""
    ends: str = ""
    monthly_budget: Annotated[int, Field(ge=0)] = 200
    message_cost_twd: Annotated[float, Field(ge=0)] = 0.2
    offer: Annotated[str, Field(min_length=1, max_length=120)] = (
        "下次消費折抵 NT$30 / NT$30 off your next visit"
    )
    valid_days: Annotated[int, Field(ge=1, le=366)] = 30
    coupon_api: bool = False
    discount_twd: Annotated[int, Field(ge=1, le=100_000)] = 30

    @field_validator("starts", "ends")
    @classmethod
    def _date(cls, value: str) -> str:
        if value:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"must be a date YYYY-MM-DD or empty, got {value!r}") from None
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError(f"must be a date YYYY-MM-DD or empty, got {value!r}")
        return value

    @model_validator(mode="after")
    def _order(self) -> CampaignConfig:
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        return self


class TagRuleConfig(Section):
    """A member tag earned by buying in a category often enough (synced upstream; LINE has no tag API)."""

    tag: Annotated[str, Field(min_length=1, max_length=40)]
    category: Annotated[str, Field(min_length=1, max_length=40)]
    min_purchases: Annotated[int, Field(ge=1, le=1000)] = 3
    window_days: Annotated[int, Field(ge=1, le=366)] = 30


class CouponsConfig(Section):
    """Welcome-coupon delivery, the funnel report and tag rules."""

    timezone: str = "Asia/Taipei"
    # A reply token is tried only while younger than this, counted from the relay's receipt of
    # the webhook. LINE: use a reply token within one minute of the webhook. The last attempt
    # starts before the ttl and may take `timeouts.line_api` (10 s) to be answered, and the
    # webhook's age when the relay stamps it plus the relay/device clock difference (NTP) cost
    # a few seconds more: 40 + 10 + ~10 of margin stays inside LINE's 60. Longer than the old 20 s,
    # so a shopper whose message crossed a slow link still gets the free reply, not a paid push.
    reply_token_ttl_s: Annotated[float, Field(gt=0, le=50)] = 40.0
    quota_cache_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    push_batch: Annotated[int, Field(ge=1, le=500)] = 20
    plan_free_messages: Annotated[int, Field(ge=0)] = 200
    barcode_url: str = ""
    tag_rules: list[TagRuleConfig] = Field(default_factory=list)
    # The funnel's greeted_then_paid: a payment by the greeted shopper within this many hours.
    visit_attribution_h: Annotated[float, Field(gt=0, le=24 * 31)] = 2.0

    _zone = field_validator("timezone")(check_timezone)

    @field_validator("barcode_url")
    @classmethod
    def _barcode(cls, value: str) -> str:
        if value and (not value.startswith("https://") or "{code}" not in value):
            raise ValueError(f"must be an https:// URL containing {{code}}, got {value!r}")
        return value


_GREETING_HWID = re.compile(r"^[0-9a-f]{10}\Z")


class GreetingConfig(Section):
    """One `[[greetings]]` entry: what a friend who walks in is told, and how often."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")] = "welcome"
    enabled: bool = True
    text_zh: Annotated[str, Field(min_length=1, max_length=2000)] = "歡迎光臨!憑此訊息享 88 折"
    text_en: Annotated[str, Field(max_length=2000)] = "Welcome! Show this message for 12% off."
    campaign: Annotated[str, Field(pattern=r"^([a-z0-9_-]{1,32})?$")] = ""
    cooldown_h: Annotated[float, Field(ge=0, le=24 * 366)] = 24.0
    push_fallback: bool = False
    monthly_budget: Annotated[int, Field(ge=0)] = 100
    message_cost_twd: Annotated[float, Field(ge=0)] = 0.2
    hwids: list[str] = Field(default_factory=list)
    starts: str = ""
    ends: str = ""

    @field_validator("hwids")
    @classmethod
    def _hwids(cls, value: list[str]) -> list[str]:
        out = []
        for hwid in value:
            hwid = hwid.strip().lower()
            if not _GREETING_HWID.match(hwid):
                raise ValueError(f"each HWID must be 10 hex digits, got {hwid!r}")
            out.append(hwid)
        return out

    @field_validator("starts", "ends")
    @classmethod
    def _date(cls, value: str) -> str:
        if value and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"must be a date YYYY-MM-DD or empty, got {value!r}")
        if value:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"must be a date YYYY-MM-DD or empty, got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _order(self) -> GreetingConfig:
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        return self

    def active_on(self, day: date, hwid: str) -> bool:
        if not self.enabled or (self.hwids and hwid not in self.hwids):
            return False
        if self.starts and day < date.fromisoformat(self.starts):
            return False
        return not (self.ends and day > date.fromisoformat(self.ends))
