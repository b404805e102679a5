"""The pure delivery policy: answer classification, actions, budget, dates, codes, messages."""

from __future__ import annotations

import ast
import itertools
from datetime import date
from pathlib import Path

import pytest
from linebot.v3.messaging import Message

import membership.coupons as coupons
from agent.config import CampaignConfig, ConfigError, parse_config
from membership.coupons._policy import (
    CODE_ALPHABET,
    PUSH_ACTIONS,
    Answer,
    Budget,
    BudgetVerdict,
    Outcome,
    PushAction,
    budget_verdict,
    campaign_active,
    classify,
    coupon_create_request,
    coupon_messages,
    local_day,
    local_month,
    make_code,
    normalize_code,
    reply_is_fresh,
    welcome_campaign,
)

POLICY = Path(coupons.__file__).with_name("_policy.py")


def test_policy_module_does_no_io() -> None:
    tree = ast.parse(POLICY.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert not imported & {"asyncio", "aiohttp", "sqlalchemy", "linebot", "requests", "socket", "time"}


@pytest.mark.parametrize(
    ("status", "message", "outcome"),
    [
        (200, "", Outcome.SENT),
        (409, "The retry key is already accepted", Outcome.ALREADY_SENT),
        (0, "no answer: TimeoutError", Outcome.UNKNOWN),
        (500, "Internal server error", Outcome.UNKNOWN),
        (503, "", Outcome.UNKNOWN),
        (429, "Too Many Requests", Outcome.RATE_LIMITED),
        (429, "The API rate limit has been exceeded. Try again later.", Outcome.RATE_LIMITED),
        (429, "You have reached your monthly limit.", Outcome.MONTHLY_LIMIT),
        (429, "  you have reached your monthly limit. ", Outcome.MONTHLY_LIMIT),
        (401, "Authentication failed.", Outcome.UNAUTHORIZED),
        (400, "Invalid reply token", Outcome.INVALID_REPLY_TOKEN),
        (400, "Failed to send messages", Outcome.REJECTED),
        (403, "Access to this API is not available for your account", Outcome.REJECTED),
        (404, "Not found", Outcome.REJECTED),
    ],
)
def test_classify(status: int, message: str, outcome: Outcome) -> None:
    assert classify(Answer(status=status, message=message)) is outcome


def test_every_outcome_has_exactly_one_push_action() -> None:
    assert set(PUSH_ACTIONS) == set(Outcome)
    assert PUSH_ACTIONS[Outcome.ALREADY_SENT] is PushAction.MARK_SENT
    assert PUSH_ACTIONS[Outcome.MONTHLY_LIMIT] is PushAction.STOP_CAMPAIGN
    assert PUSH_ACTIONS[Outcome.RATE_LIMITED] is PushAction.RETRY
    assert PUSH_ACTIONS[Outcome.UNKNOWN] is PushAction.RETRY
    assert PUSH_ACTIONS[Outcome.UNAUTHORIZED] is PushAction.ALERT_RETRY
    assert PUSH_ACTIONS[Outcome.REJECTED] is PushAction.DEAD_LETTER


@pytest.mark.parametrize(
    ("pushes", "budget", "limited", "value", "used", "verdict"),
    [
        (0, 200, True, 200, 0, BudgetVerdict.ALLOW),
        (199, 200, True, 200, 199, BudgetVerdict.ALLOW),
        (200, 200, True, 5000, 0, BudgetVerdict.OVER_BUDGET),
        (0, 0, False, 0, 0, BudgetVerdict.OVER_BUDGET),
        (3, 200, True, 200, 200, BudgetVerdict.OVER_QUOTA),
        (3, 200, False, 0, 10_000, BudgetVerdict.ALLOW),
    ],
)
def test_budget_verdict(
    pushes: int, budget: int, limited: bool, value: int, used: int, verdict: BudgetVerdict
) -> None:
    given = Budget(
        campaign_pushes=pushes,
        campaign_budget=budget,
        quota_limited=limited,
        quota_value=value,
        quota_used=used,
    )
    assert budget_verdict(given) is verdict


def test_campaign_dates_are_inclusive_local_days() -> None:
    campaign = CampaignConfig(starts="2026-03-01", ends="2026-03-31")
    assert not campaign_active(campaign, date(2026, 2, 28))
    assert campaign_active(campaign, date(2026, 3, 1))
    assert campaign_active(campaign, date(2026, 3, 31))
    assert not campaign_active(campaign, date(2026, 4, 1))
    assert campaign_active(CampaignConfig(), date(1999, 1, 1))
    assert not campaign_active(CampaignConfig(enabled=False), date(2026, 3, 2))


def test_local_day_and_month_use_the_shop_zone() -> None:
    ts = 1_790_000_000 - 1_790_000_000 % 86400 + 16 * 3600 + 30 * 60  # 16:30 UTC = 00:30 next day in Taipei
    assert local_day(ts, "UTC") < local_day(ts, "Asia/Taipei")
    assert local_month(1_793_462_400, "Asia/Taipei") == "2026-11"  # 2026-10-31 16:00 UTC


def test_welcome_campaign_is_the_enabled_one_named_welcome() -> None:
    base = {"device": {"store_id": "s", "device_id": "d"}}
    config = parse_config(
        {**base, "campaigns": [{"name": "vip"}, {"name": "welcome", "coupon_id": "c1"}]}, environ={}
    )
    assert welcome_campaign(config) is config.campaigns[1]
    config = parse_config({**base, "campaigns": [{"name": "welcome", "enabled": False}]}, environ={})
    assert welcome_campaign(config) is None


@pytest.mark.parametrize(
    ("campaigns", "needle"),
    [
        ([{"name": "welcome"}, {"name": "welcome"}], "campaign names must be unique"),
        ([{"starts": "2026-13-01"}], "campaigns.0.starts: must be a date YYYY-MM-DD"),
        ([{"starts": "2026-03-02", "ends": "2026-03-01"}], "is before starts"),
    ],
)
def test_campaign_config_errors_name_the_key(campaigns: list[dict[str, str]], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"device": {"store_id": "s", "device_id": "d"}, "campaigns": campaigns}, environ={})
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("coupons", "needle"),
    [
        ({"timezone": "Mars/Olympus"}, "coupons.timezone: must be an IANA time zone"),
        ({"barcode_url": "http://x/{code}"}, "coupons.barcode_url: must be an https:// URL"),
        ({"reply_token_ttl_s": 90}, "coupons.reply_token_ttl_s"),
        ({"tag_rules": [{"tag": "t"}]}, "coupons.tag_rules.0.category: missing"),
    ],
)
def test_coupons_config_errors_name_the_key(coupons: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"device": {"store_id": "s", "device_id": "d"}, "coupons": coupons}, environ={})
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("received", "now", "fresh"),
    [
        (None, 100.0, False),
        (100.0, 100.0, True),
        (100.0, 119.9, True),
        (100.0, 120.0, False),
        (100.0, 99.0, False),
    ],
)
def test_reply_is_fresh(received: float | None, now: float, fresh: bool) -> None:
    assert reply_is_fresh(received, now, 20.0) is fresh


def test_codes_round_trip_and_are_unique() -> None:
    codes = {make_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in itertools.islice(codes, 50):
        assert len(code) == 10 and set(code) <= set(CODE_ALPHABET)
        assert normalize_code(code) == code
        assert normalize_code(f" {code[:5].lower()}-{code[5:]} ") == code


def test_every_single_character_typo_is_caught() -> None:
    code = make_code(bytes(range(6)))
    for position, replacement in itertools.product(range(10), CODE_ALPHABET):
        if code[position] != replacement:
            typo = code[:position] + replacement + code[position + 1 :]
            assert normalize_code(typo) is None, typo


def test_crockford_lookalikes_are_read_as_digits() -> None:
    code = make_code(b"\x00" * 6)  # all zeros in the body
    assert code.startswith("000000000")
    assert normalize_code("OOOOO-OOOO" + code[-1]) == code


@pytest.mark.parametrize("text", ["", "ABC", "0123456789AB", "UUUUUUUUUU", "!!!!!!!!!!"])
def test_garbage_is_not_a_code(text: str) -> None:
    assert normalize_code(text) is None


def test_messages_are_valid_sdk_messages_with_the_code() -> None:
    code = make_code()
    plain = coupon_messages(CampaignConfig(), code, valid_until=date(2026, 12, 31))
    assert [m["type"] for m in plain] == ["flex"]
    with_coupon = coupon_messages(
        CampaignConfig(coupon_id="coupon_1"),
        code,
        valid_until=date(2026, 12, 31),
        barcode_url="https://img.example/b/{code}.png",
    )
    assert [m["type"] for m in with_coupon] == ["coupon", "flex"]
    assert with_coupon[1]["contents"]["hero"]["url"] == f"https://img.example/b/{code}.png"
    for message in plain + with_coupon:
        assert Message.from_dict(message).to_dict() == message  # what the SDK will send
    assert code[:5] in plain[0]["altText"]


def test_package_exports_exactly_its_public_names() -> None:
    import types

    public = {
        n for n, v in vars(coupons).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert len(coupons.__all__) == len(set(coupons.__all__))
    assert set(coupons.__all__) == public


def test_coupon_create_request_is_a_valid_sdk_request() -> None:
    from linebot.v3.messaging import CouponCreateRequest

    campaign = CampaignConfig(starts="2026-03-01", ends="2026-03-31", valid_days=30, discount_twd=40)
    body = coupon_create_request(campaign, now=1_772_000_000.0, zone="Asia/Taipei")
    assert CouponCreateRequest.from_dict(body).to_dict() == body
    assert body["startTimestamp"] == 1_772_000_000  # starts is later than now: usable from now
    assert body["endTimestamp"] == 1_777_564_800  # 2026-05-01 00:00 Taipei: ends + 30 days, inclusive
    assert body["reward"]["priceInfo"]["fixedAmount"] == 40
    with pytest.raises(ValueError, match="no LINE coupon timezone"):
        coupon_create_request(campaign, now=0.0, zone="Europe/Paris")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"line_user_id": "U123"}, "line_user_id must be U and 32 hex digits"),
        ({"line_user_id": "u" + "a" * 32}, "line_user_id must be U and 32 hex digits"),
        ({"reply_token": "t"}, "reply_token needs reply_token_received_at"),
    ],
)
def test_welcome_request_rejects_bad_input(fields: dict[str, str], needle: str) -> None:
    from membership.coupons import WelcomeRequest

    base = {"line_user_id": "U" + "a" * 32, "store_id": "s", "device_id": "d"}
    with pytest.raises(ValueError, match=needle):
        WelcomeRequest(**{**base, **fields})  # type: ignore[arg-type]
