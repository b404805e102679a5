"""What LINE's Messaging API accepts in a request body, as the emulator checks it: message
types, text length in UTF-16 code units, textV2 substitutions, coupon fields, user ids and
retry keys (line-openapi's messaging-api.yml). Pure functions; each returns (field, problem)
pairs for LINE's 400 `details`, or a bool."""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "COUPON_TIMEZONES",
    "TEXT_LIMIT",
    "USER_ID",
    "UUID",
    "check_coupon",
    "check_messages",
    "utf16_length",
]

# The timezone enum of LINE's coupon API (line-openapi, as generated into line-bot-sdk 3.27).
COUPON_TIMEZONES = frozenset(
    [
        "ETC_GMT_MINUS_12",
        "ETC_GMT_MINUS_11",
        "PACIFIC_HONOLULU",
        "AMERICA_ANCHORAGE",
        "AMERICA_LOS_ANGELES",
        "AMERICA_PHOENIX",
        "AMERICA_CHICAGO",
        "AMERICA_NEW_YORK",
        "AMERICA_CARACAS",
        "AMERICA_SANTIAGO",
        "AMERICA_ST_JOHNS",
        "AMERICA_SAO_PAULO",
        "ETC_GMT_MINUS_2",
        "ATLANTIC_CAPE_VERDE",
        "EUROPE_LONDON",
        "EUROPE_PARIS",
        "EUROPE_ISTANBUL",
        "EUROPE_MOSCOW",
        "ASIA_TEHRAN",
        "ASIA_TBILISI",
        "ASIA_KABUL",
        "ASIA_TASHKENT",
        "ASIA_COLOMBO",
        "ASIA_KATHMANDU",
        "ASIA_ALMATY",
        "ASIA_RANGOON",
        "ASIA_BANGKOK",
        "ASIA_TAIPEI",
        "ASIA_TOKYO",
        "AUSTRALIA_DARWIN",
        "AUSTRALIA_SYDNEY",
        "ASIA_VLADIVOSTOK",
        "ETC_GMT_PLUS_12",
        "PACIFIC_TONGATAPU",
    ]
)
USER_ID = re.compile(r"^U[0-9a-f]{32}\Z")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_MESSAGE_TYPES = frozenset(
    {
        "text",
        "textV2",
        "sticker",
        "image",
        "video",
        "audio",
        "location",
        "imagemap",
        "template",
        "flex",
        "coupon",
    }
)
TEXT_LIMIT = 5000  # UTF-16 code units


def check_messages(messages: Any) -> list[tuple[str, str]]:
    if not isinstance(messages, list) or not 1 <= len(messages) <= 5:
        return [("messages", "must contain 1 to 5 message objects")]
    problems = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("type") not in _MESSAGE_TYPES:
            problems.append((f"messages[{i}].type", "invalid message type"))
        elif message["type"] in ("text", "textV2") and not _text_fits(message.get("text")):
            problems.append((f"messages[{i}].text", f"must be 1 to {TEXT_LIMIT} characters"))
        elif message["type"] == "textV2" and "substitution" in message:
            problems += _check_substitution(message["substitution"], f"messages[{i}].substitution")
        elif message["type"] == "flex" and (
            not message.get("altText") or not isinstance(message.get("contents"), dict)
        ):
            problems.append((f"messages[{i}]", "flex needs altText and contents"))
        elif message["type"] == "coupon" and not message.get("couponId"):
            problems.append((f"messages[{i}].couponId", "must be specified"))
    return problems


def utf16_length(text: str) -> int:
    """Length as LINE counts it: UTF-16 code units (a character outside the BMP counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _text_fits(text: Any) -> bool:
    return isinstance(text, str) and 1 <= utf16_length(text) <= TEXT_LIMIT


def _check_substitution(substitution: Any, where: str) -> list[tuple[str, str]]:
    """textV2's `substitution`: placeholder name -> a mention (of a user or all) or a LINE emoji."""
    if not isinstance(substitution, dict):
        return [(where, "must be an object")]
    problems: list[tuple[str, str]] = []
    for name, value in substitution.items():
        at = f"{where}.{name}"
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "mention":
            mentionee = value.get("mentionee")
            target = mentionee.get("type") if isinstance(mentionee, dict) else None
            if target == "user":
                if not isinstance(mentionee.get("userId"), str) or not mentionee["userId"]:  # type: ignore[union-attr]
                    problems.append((f"{at}.mentionee.userId", "must be specified"))
            elif target != "all":
                problems.append((f"{at}.mentionee.type", "must be user or all"))
        elif kind == "emoji":
            for key in ("productId", "emojiId"):
                if not isinstance(value.get(key), str) or not value[key]:
                    problems.append((f"{at}.{key}", "must be specified"))
        else:
            problems.append((f"{at}.type", "must be mention or emoji"))
    return problems


def check_coupon(body: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    title = body.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= 60:
        problems.append(("title", "must be 1 to 60 characters"))
    for name in ("startTimestamp", "endTimestamp"):
        if not isinstance(body.get(name), int):
            problems.append((name, "must be epoch seconds"))
    if not problems and body["endTimestamp"] <= body["startTimestamp"]:
        problems.append(("endTimestamp", "must be after startTimestamp"))
    if body.get("timezone") not in COUPON_TIMEZONES:
        problems.append(("timezone", "invalid timezone"))
    if body.get("visibility") not in ("UNLISTED", "PUBLIC"):
        problems.append(("visibility", "must be UNLISTED or PUBLIC"))
    if body.get("maxUseCountPerTicket") not in (1, -1):
        problems.append(("maxUseCountPerTicket", "must be 1 or -1"))
    condition = body.get("acquisitionCondition")
    if not isinstance(condition, dict) or condition.get("type") not in ("normal", "lottery"):
        problems.append(("acquisitionCondition.type", "must be normal or lottery"))
    elif condition["type"] == "lottery" and not (
        isinstance(condition.get("lotteryProbability"), int) and 1 <= condition["lotteryProbability"] <= 99
    ):
        problems.append(("acquisitionCondition.lotteryProbability", "must be 1 to 99"))
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 1000):
        problems.append(("description", "must be at most 1000 characters"))
    return problems
