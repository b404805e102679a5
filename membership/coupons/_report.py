"""The funnel report's three faces, all pure: a text table, a JSON document and a PNG chart.

Owns the table layout, the JSON shape (the issue's keys at
the top level, per-day rows under "days") and the Pillow funnel chart. Reading facts from the DB
is the command's job (`agent/commands/report.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from membership.coupons._funnel import REPORT_KEYS, FunnelRow, parse_since

__all__ = ["CJK_FONTS", "format_table", "parse_since", "render_chart", "report_json"]

CJK_FONTS = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
)
_COLUMNS = (
    ("day", "day", 10),
    ("device", "device_id", 10),
    ("pay", "payments", 5),
    ("QR", "binding_qr_shown", 5),
    ("msg", "binding_messages", 5),
    ("new", "new_friends", 5),
    ("bound", "bound_members", 5),
    ("rate", "binding_rate", 5),
    ("reply", "coupons_replied", 5),
    ("push", "coupons_pushed", 5),
    ("redeem", "coupons_redeemed", 6),
    ("visit", "beacon_visits", 5),
    ("greet", "greetings_replied", 5),
    ("g+paid", "greeted_then_paid", 6),
    ("NT$/friend", "cost_per_friend_twd", 10),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_table(rows: Sequence[FunnelRow], total: FunnelRow, *, plan_messages: int) -> str:
    """Fixed-width table: one line per device and day, then the total and the plan use."""
    header = "  ".join(title.rjust(width) for title, _, width in _COLUMNS)
    lines = [header, "-" * len(header)]
    for row in [*rows, total]:
        data = row.as_dict()
        data["day"] = data["day"] or "total"
        data["device_id"] = data["device_id"] if row.day else "*"
        lines.append("  ".join(_cell(data[key]).rjust(width)[-width:] for _, key, width in _COLUMNS))
    lines.append(
        f"messages spent {total.messages_spent} of the plan's {plan_messages} this period; "
        f"LINE Pay fees NT${total.linepay_fee_twd:.2f} + messages NT${total.message_cost_twd:.2f}"
    )
    return "\n".join(lines)


def report_json(
    rows: Sequence[FunnelRow],
    total: FunnelRow,
    *,
    since: float,
    until: float,
    store_id: str,
    plan_messages: int,
) -> dict[str, Any]:
    """The issue's keys at the top level (the totals), plus context and the per-day rows."""
    totals = total.as_dict()
    document: dict[str, Any] = {key: totals[key] for key in REPORT_KEYS}
    document.update(
        {
            "store_id": store_id,
            "since": since,
            "until": until,
            "payments_twd": totals["payments_twd"],
            "linepay_fee_twd": totals["linepay_fee_twd"],
            "message_cost_twd": totals["message_cost_twd"],
            "plan_messages": plan_messages,
            "days": [row.as_dict() for row in rows],
        }
    )
    return document


def _font(size: int, font_path: Path | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in (font_path, *CJK_FONTS):
        if candidate is not None and candidate.exists():
            return ImageFont.truetype(str(candidate), size)
    return ImageFont.load_default(size)


_STAGES = (
    ("付款 Payments", "payments"),
    ("會員QR Binding QR shown", "binding_qr_shown"),
    ("綁定訊息 Binding messages", "binding_messages"),
    ("新好友 New friends", "new_friends"),
    ("綁定會員 Bound members", "bound_members"),
    ("優惠券送達 Coupons delivered", "coupons_delivered"),
    ("優惠券兌換 Coupons redeemed", "coupons_redeemed"),
    ("來店好友 Beacon visits", "beacon_visits"),
    ("迎賓訊息 Greetings replied", "greetings_replied"),
    ("迎賓後消費 Greeted then paid", "greeted_then_paid"),
)


def render_chart(total: FunnelRow, *, title: str, font_path: Path | None = None) -> Image.Image:
    """A horizontal funnel: one centred bar per stage, width proportional to its count."""
    top, bar_h, gap, label_w = 120, 56, 16, 330
    width, height = 1000, top + len(_STAGES) * (bar_h + gap) + 16
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    big, small = _font(30, font_path), _font(20, font_path)
    draw.text((40, 24), title, font=big, fill="#111111")
    cost = total.cost_per_friend_twd
    subtitle = (
        f"每位新好友成本 Cost per friend: {'-' if cost is None else f'NT${cost:.2f}'}   "
        f"訊息 Messages: {total.messages_spent}   綁定率 Binding rate: "
        f"{'-' if total.binding_rate is None else f'{total.binding_rate:.0%}'}"
    )
    draw.text((40, 70), subtitle, font=small, fill="#444444")
    data = total.as_dict()
    data["coupons_delivered"] = total.coupons_replied + total.coupons_pushed
    peak = max([data[key] for _, key in _STAGES] + [1])
    bar_span = width - label_w - 60
    for i, (label, key) in enumerate(_STAGES):
        y = top + i * (bar_h + gap)
        value = int(data[key])
        bar_w = max(4, round(bar_span * value / peak))
        x0 = label_w + (bar_span - bar_w) // 2
        shade = 200 - i * 22
        draw.rectangle((x0, y, x0 + bar_w, y + bar_h), fill=(6, shade, 85))
        draw.text((40, y + 14), label, font=small, fill="#111111")
        text = str(value)
        box = draw.textbbox((0, 0), text, font=small)
        text_w = box[2] - box[0]
        if bar_w >= text_w + 12:
            draw.text((x0 + (bar_w - text_w) // 2, y + 14), text, font=small, fill="white")
        else:  # too narrow to hold its number: write it beside the bar
            draw.text((x0 + bar_w + 8, y + 14), text, font=small, fill="#111111")
    return image
