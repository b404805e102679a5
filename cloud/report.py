"""The fleet funnel report: per store and day, per store and for the whole fleet.

Two sources, one rule: a device's own `daily_summary` (its `funnel` stream, sent for closed
days) is the truth for that device and day; for days it has not summarised yet (today, or a
device whose summary is late), the figures come from the live events the cloud stored
(payments, conversions, coupon events). Cost per friend = LINE Pay's fee on the tickets that
brought new friends + the pushed messages, divided by the new friends, shown beside what a
LINE ad costs per friend. `build_report` is pure; `load_report_blocking` reads the database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import Engine, select

from cloud.fleet_config import ReportConfig
from cloud.fleet_db.tables import device_days, fleet_facts
from membership.coupons import parse_since

__all__ = [
    "COUNTS",
    "FleetRow",
    "build_report",
    "format_report",
    "load_report_blocking",
    "parse_since",
    "render_fleet_chart",
]

COUNTS = (
    "payments",
    "payments_twd",
    "binding_qr_shown",
    "binding_messages",
    "new_friends",
    "bound_members",
    "coupons_replied",
    "coupons_pushed",
    "coupons_redeemed",
)
_FACT_COUNTER = {
    "payment": "payments",
    "binding_qr_shown": "binding_qr_shown",
    "binding_message": "binding_messages",
    "new_friend": "new_friends",
    "bound_member": "bound_members",
    "coupon_replied": "coupons_replied",
    "coupon_pushed": "coupons_pushed",
    "coupon_redeemed": "coupons_redeemed",
}
@dataclass(frozen=True, kw_only=True)
class FleetRow:
    """One store and day (`scope` "day"), one store's total ("store") or the fleet's ("fleet")."""

    scope: str
    store_id: str
    day: str | None
    devices: int
    counts: Mapping[str, int]
    linepay_fee_twd: float
    message_cost_twd: float
    monthly_message_quota: int
    ad_cost_per_friend_twd: tuple[float, float]
    summarised_days: int = 0
    live_days: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def _count(self, key: str) -> int:
        return int(self.counts.get(key, 0))

    @property
    def binding_rate(self) -> float | None:
        """Bound members per binding QR shown (the device's definition when it shows QRs),
        else per payment; None with nothing to divide by."""
        base = self._count("binding_qr_shown") or self._count("payments")
        return round(self._count("bound_members") / base, 4) if base else None

    @property
    def redemption_rate(self) -> float | None:
        sent = self._count("coupons_replied") + self._count("coupons_pushed")
        return round(self._count("coupons_redeemed") / sent, 4) if sent else None

    @property
    def cost_per_friend_twd(self) -> float | None:
        friends = self._count("new_friends")
        return round((self.linepay_fee_twd + self.message_cost_twd) / friends, 2) if friends else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scope": self.scope, "store_id": self.store_id, "day": self.day}
        out.update({key: self._count(key) for key in COUNTS})
        out.update(
            {
                "devices": self.devices,
                "binding_rate": self.binding_rate,
                "redemption_rate": self.redemption_rate,
                "messages_spent": self._count("coupons_pushed"),  # replies are free
                "monthly_message_quota": self.monthly_message_quota,
                "linepay_fee_twd": round(self.linepay_fee_twd, 2),
                "message_cost_twd": round(self.message_cost_twd, 2),
                "cost_per_friend_twd": self.cost_per_friend_twd,
                "ad_cost_per_friend_twd": list(self.ad_cost_per_friend_twd),
                "summarised_days": self.summarised_days,
                "live_days": self.live_days,
            }
        )
        out.update(self.extra)
        return out


@dataclass(frozen=True, kw_only=True)
class _DeviceDay:
    store_id: str
    device_id: str
    day: str
    counts: Mapping[str, float]
    linepay_fee_twd: float
    message_cost_twd: float
    summarised: bool


def local_day(epoch: float, zone: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).date().isoformat()


def build_report(
    facts: Iterable[Mapping[str, Any]],
    summaries: Iterable[Mapping[str, Any]],
    *,
    config: ReportConfig,
    since_day: str,
    month_pushes: Mapping[str, int] | None = None,
) -> list[FleetRow]:
    """Rows per store and day, then per store, then the fleet total (a pure function).

    `facts` are fleet_facts rows, `summaries` device_days rows; `month_pushes` is the pushes
    per store in the current month, set against the plan's quota in the store totals.
    """
    zone = config.timezone
    facts = list(facts)
    amounts = {f["order_id"]: int(f["amount_twd"] or 0) for f in facts if f["kind"] == "payment"}
    live: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for fact in facts:
        counter = _FACT_COUNTER.get(fact["kind"])
        if counter is None:
            continue
        bucket = live[(fact["store_id"], fact["device_id"], local_day(fact["at"], zone))]
        bucket[counter] += 1
        if fact["kind"] == "payment":
            bucket["payments_twd"] += int(fact["amount_twd"] or 0)
        elif fact["kind"] == "new_friend":
            bucket["linepay_fee_twd"] += amounts.get(fact["order_id"], 0) * config.fee_rate
        elif fact["kind"] == "coupon_pushed":
            bucket["message_cost_twd"] += config.message_cost_twd
    days: dict[tuple[str, str, str], _DeviceDay] = {}
    for key, sums in live.items():
        if key[2] < since_day:
            continue
        days[key] = _DeviceDay(
            store_id=key[0],
            device_id=key[1],
            day=key[2],
            counts={k: sums.get(k, 0) for k in COUNTS},
            linepay_fee_twd=sums.get("linepay_fee_twd", 0.0),
            message_cost_twd=sums.get("message_cost_twd", 0.0),
            summarised=False,
        )
    for row in summaries:
        if row["day"] < since_day:
            continue
        key = (row["store_id"], row["device_id"], row["day"])
        days[key] = _DeviceDay(  # the device's own closed-day figures win
            store_id=key[0],
            device_id=key[1],
            day=key[2],
            counts={k: float(row[k]) for k in COUNTS},
            linepay_fee_twd=float(row["linepay_fee_twd"]),
            message_cost_twd=float(row["message_cost_twd"]),
            summarised=True,
        )
    return _rollup(days.values(), config, month_pushes or {})


def _sum(
    items: Sequence[_DeviceDay],
    config: ReportConfig,
    scope: str,
    store: str,
    day: str | None,
    extra: Mapping[str, Any] | None = None,
) -> FleetRow:
    counts = {k: int(sum(item.counts.get(k, 0) for item in items)) for k in COUNTS}
    return FleetRow(
        scope=scope,
        store_id=store,
        day=day,
        devices=len({(i.store_id, i.device_id) for i in items}),
        counts=counts,
        linepay_fee_twd=sum(i.linepay_fee_twd for i in items),
        message_cost_twd=sum(i.message_cost_twd for i in items),
        monthly_message_quota=config.monthly_message_quota,
        ad_cost_per_friend_twd=config.ad_cost_per_friend_twd,
        summarised_days=sum(1 for i in items if i.summarised),
        live_days=sum(1 for i in items if not i.summarised),
        extra=extra or {},
    )


def _rollup(
    items: Iterable[_DeviceDay], config: ReportConfig, month_pushes: Mapping[str, int]
) -> list[FleetRow]:
    by_store_day: dict[tuple[str, str], list[_DeviceDay]] = defaultdict(list)
    by_store: dict[str, list[_DeviceDay]] = defaultdict(list)
    everything: list[_DeviceDay] = []
    for item in items:
        by_store_day[(item.store_id, item.day)].append(item)
        by_store[item.store_id].append(item)
        everything.append(item)
    rows = [_sum(group, config, "day", store, day) for (store, day), group in sorted(by_store_day.items())]
    for store, group in sorted(by_store.items()):
        pushes = int(month_pushes.get(store, 0))
        quota = config.monthly_message_quota
        extra = {
            "month_messages_spent": pushes,
            "month_quota_used": round(pushes / quota, 4) if quota else None,
        }
        rows.append(_sum(group, config, "store", store, None, extra))
    rows.append(_sum(everything, config, "fleet", "*", None))
    return rows


def load_report_blocking(
    engine: Engine, *, since: float, now: float, config: ReportConfig, store: str | None = None
) -> list[FleetRow]:
    zone = config.timezone
    since_day = local_day(since, zone)
    month_start = datetime.fromtimestamp(now, ZoneInfo(zone)).date().replace(day=1).isoformat()
    # Payments a little before the period too: a new friend's fee comes from its ticket.
    facts_q = select(fleet_facts).where(fleet_facts.c.at >= since - 86400)
    days_q = select(device_days).where(device_days.c.day >= min(since_day, month_start))
    if store is not None:
        facts_q = facts_q.where(fleet_facts.c.store_id == store)
        days_q = days_q.where(device_days.c.store_id == store)
    with engine.connect() as conn:
        facts = [dict(r) for r in conn.execute(facts_q).mappings()]
        summaries = [dict(r) for r in conn.execute(days_q).mappings()]
    month_rows = build_report(facts, summaries, config=config, since_day=month_start)
    month_pushes = {r.store_id: r.counts["coupons_pushed"] for r in month_rows if r.scope == "store"}
    period_facts = [f for f in facts if f["at"] >= since or f["kind"] == "payment"]
    rows = build_report(
        period_facts, summaries, config=config, since_day=since_day, month_pushes=month_pushes
    )
    return [r for r in rows if r.scope == "fleet" or r.day is None or r.day >= since_day]


_COLUMNS = (
    ("store", "store_id", 12),
    ("day", "day", 10),
    ("pay", "payments", 5),
    ("NT$", "payments_twd", 8),
    ("QR", "binding_qr_shown", 5),
    ("msg", "binding_messages", 5),
    ("new", "new_friends", 5),
    ("bound", "bound_members", 5),
    ("rate", "binding_rate", 5),
    ("reply", "coupons_replied", 5),
    ("push", "coupons_pushed", 5),
    ("redeem", "coupons_redeemed", 6),
    ("NT$/friend", "cost_per_friend_twd", 10),
)


def _cell(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key == "binding_rate":
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_report(rows: Sequence[FleetRow]) -> str:
    """A plain table: store-days, then store totals, then the fleet."""
    header = " ".join(title.rjust(width) for title, _, width in _COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        data = row.as_dict()
        if row.scope == "store":
            data["day"] = "total"
        elif row.scope == "fleet":
            data["store_id"], data["day"] = "FLEET", "total"
        lines.append(" ".join(_cell(data.get(key), key).rjust(width) for _, key, width in _COLUMNS))
    fleet = next((r for r in rows if r.scope == "fleet"), None)
    if fleet is not None:
        low, high = fleet.ad_cost_per_friend_twd
        cost = fleet.cost_per_friend_twd
        lines.append(
            f"cost per friend NT${'-' if cost is None else f'{cost:.2f}'} (LINE ad: NT${low:.0f}-{high:.0f});"
            f" messages spent {fleet.as_dict()['messages_spent']}"
            f" (plan: {fleet.monthly_message_quota}/month per store)"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- chart

CJK_FONTS = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJKtc-Regular.otf"),
)
_TC_FACE = 3  # NotoSansCJK-Regular.ttc: JP, KR, SC, TC, HK


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in CJK_FONTS:
        if path.exists():
            index = _TC_FACE if path.suffix == ".ttc" else 0
            try:
                return ImageFont.truetype(str(path), size, index=index)
            except OSError:
                return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


STAGES = (
    ("付款", "Payments", "payments"),
    ("會員QR", "Binding QR", "binding_qr_shown"),
    ("新好友", "New friends", "new_friends"),
    ("綁定會員", "Bound members", "bound_members"),
    ("優惠券送達", "Coupons sent", "coupons_sent"),
    ("兌換", "Redeemed", "coupons_redeemed"),
)
_COLOURS = ((6, 199, 85), (0, 150, 136), (33, 150, 243), (63, 81, 181), (255, 152, 0), (233, 30, 99))


def render_fleet_chart(rows: Sequence[FleetRow], *, title: str) -> Image.Image:
    """Stores side by side: per store one funnel column group (zh-TW and English labels)."""
    stores = [r for r in rows if r.scope == "store"]
    width = max(900, 180 + 210 * max(1, len(stores)))
    height = 620
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    big, small, tiny = _font(30), _font(18), _font(15)
    draw.text((40, 20), title, font=big, fill="#111111")
    fleet = next((r for r in rows if r.scope == "fleet"), None)
    if fleet is not None:
        cost = fleet.cost_per_friend_twd
        low, high = fleet.ad_cost_per_friend_twd
        draw.text(
            (40, 64),
            f"每位新好友成本 Cost per friend: {'-' if cost is None else f'NT${cost:.2f}'}"
            f"  (LINE廣告 LINE ad NT${low:.0f}-{high:.0f})   綁定率 Binding rate: "
            f"{'-' if fleet.binding_rate is None else f'{fleet.binding_rate:.0%}'}",
            font=small,
            fill="#444444",
        )
    for i, (zh, en, _) in enumerate(STAGES):  # legend, three to a row
        x, y = 40 + (i % 3) * 280, 100 + (i // 3) * 26
        draw.rectangle((x, y, x + 16, y + 16), fill=_COLOURS[i])
        draw.text((x + 22, y - 2), f"{zh} {en}", font=tiny, fill="#222222")
    values = [_stage_values(r) for r in stores]
    peak = max([v for row in values for v in row] + [1])
    top, bottom = 180, height - 90
    group_w = 210
    bar_w = 26
    for s, (store, stage_values) in enumerate(zip(stores, values, strict=True)):
        x0 = 120 + s * group_w
        for i, value in enumerate(stage_values):
            h = round((bottom - top) * value / peak)
            x = x0 + i * (bar_w + 4)
            draw.rectangle((x, bottom - max(h, 1), x + bar_w, bottom), fill=_COLOURS[i])
            text = str(value)
            box = draw.textbbox((0, 0), text, font=tiny)
            draw.text(
                (x + (bar_w - (box[2] - box[0])) // 2, bottom - h - 20), text, font=tiny, fill="#111111"
            )
        draw.text((x0, bottom + 10), store.store_id, font=small, fill="#111111")
        rate = store.binding_rate
        cost = store.cost_per_friend_twd
        draw.text(
            (x0, bottom + 36),
            f"{'-' if rate is None else f'{rate:.0%}'} · {'-' if cost is None else f'NT${cost:.1f}'}",
            font=tiny,
            fill="#555555",
        )
    if not stores:
        draw.text((40, top + 40), "尚無資料 No data yet", font=big, fill="#888888")
    return image


def _stage_values(row: FleetRow) -> list[int]:
    data = row.as_dict()
    data["coupons_sent"] = data["coupons_replied"] + data["coupons_pushed"]
    return [int(data[key]) for _, _, key in STAGES]
