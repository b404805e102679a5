"""The technician's view over HTTP, mounted on the POS listener: `/status` (an HTML page that
refreshes itself), `/status.json` (the same facts for `shopedge doctor` and scripts) and
`/metrics` (Prometheus text format 0.0.4).

Owns `OpsFacts`, the few facts no health line carries (last payment, last sync, when each store
beacon was last heard), which components record through `ctx.services["ops"]`; and the pure
renderers, which take one `OpsSnapshot` so the page and the metrics always agree. Nothing here
shows a secret: only health lines, counts, times and identifiers.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent import __version__
from agent.context import AgentContext
from base.health import ComponentHealth, Level

__all__ = [
    "OpsFacts",
    "OpsSnapshot",
    "add_ops_routes",
    "collect",
    "ops_facts",
    "render_metrics",
    "render_status_html",
]

STREAMS = ("payment", "sale", "conversion", "coupon_push", "presence", "beacon_health", "health", "funnel")
REFRESH_S = 5
_LEVEL_VALUE = {Level.GREEN: 0, Level.AMBER: 1, Level.RED: 2}


class OpsFacts:
    """Mutable facts for the status page; components call the `record_*` methods."""

    def __init__(self) -> None:
        self.last_payment_at: float | None = None
        self.last_payment_amount_twd: int | None = None
        self.last_payment_result: str | None = None
        self.last_sync_at: float | None = None
        self.beacons_last_heard: dict[str, float] = {}

    def record_payment(self, *, at: float, amount_twd: int, result: str) -> None:
        self.last_payment_at, self.last_payment_amount_twd, self.last_payment_result = at, amount_twd, result

    def record_sync(self, *, at: float) -> None:
        self.last_sync_at = at

    def record_beacon(self, hwid: str, *, at: float) -> None:
        self.beacons_last_heard[hwid.lower()] = at


def ops_facts(ctx: AgentContext) -> OpsFacts:
    """The context's facts object, created on first use."""
    facts = ctx.services.get("ops")
    if not isinstance(facts, OpsFacts):
        facts = OpsFacts()
        ctx.services["ops"] = facts
    return facts


@dataclass(frozen=True, kw_only=True)
class BeaconState:
    hwid: str
    last_heard: float | None
    silent: bool


@dataclass(frozen=True, kw_only=True)
class OpsSnapshot:
    """Everything `/status` and `/metrics` show, taken at one instant."""

    now: float
    started_at: float
    store_id: str
    device_id: str
    device_name: str
    overall: Level
    components: tuple[ComponentHealth, ...]
    queue_depths: Mapping[str, int] | None
    last_payment_at: float | None
    last_payment_amount_twd: int | None
    last_payment_result: str | None
    last_sync_at: float | None
    beacons: tuple[BeaconState, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "now": self.now,
            "store_id": self.store_id,
            "device_id": self.device_id,
            "overall": str(self.overall),
            "components": [
                {"name": c.name, "level": str(c.level), "detail": c.detail, "since": c.since}
                for c in self.components
            ],
            "queue_depths": dict(self.queue_depths) if self.queue_depths is not None else None,
            "last_payment": {
                "at": self.last_payment_at,
                "amount_twd": self.last_payment_amount_twd,
                "result": self.last_payment_result,
            },
            "last_sync_at": self.last_sync_at,
            "beacons": [
                {"hwid": b.hwid, "last_heard": b.last_heard, "silent": b.silent} for b in self.beacons
            ],
        }


def beacon_states(
    hwids: list[str],
    heard: Mapping[str, float],
    *,
    now: float,
    silent_after: float,
    ble_detail: str | None = None,
) -> list[BeaconState]:
    """Each configured store beacon and whether it is silent.

    A beacon with a recorded sighting (`OpsFacts.record_beacon`) is silent when unheard for
    `silent_after` seconds. Otherwise the BLE component's own watch decides: its health detail
    names silent store beacons ("store beacon <hwid>[, <hwid>] silent"); with no BLE health
    either, a beacon never heard counts as silent.
    """
    named_silent: set[str] = set()
    if ble_detail is not None:
        for part in ble_detail.split(";"):
            part = part.strip()
            if part.startswith("store beacon ") and part.endswith(" silent"):
                named_silent |= {h.strip() for h in part[len("store beacon ") : -len(" silent")].split(",")}
    out = []
    for hwid in hwids:
        last = heard.get(hwid)
        if last is not None:
            silent = now - last > silent_after
        elif ble_detail is not None:
            silent = hwid in named_silent
        else:
            silent = True
        out.append(BeaconState(hwid=hwid, last_heard=last, silent=silent))
    return out


async def _queue_depths(ctx: AgentContext) -> dict[str, int] | None:
    outbox = ctx.services.get("outbox")
    if outbox is None:
        return None
    return {stream: int(await outbox.depth(stream)) for stream in STREAMS}


async def collect(ctx: AgentContext, *, started_at: float) -> OpsSnapshot:
    now = ctx.wall_clock()
    facts = ops_facts(ctx)
    cfg = ctx.config
    ble = ctx.health.get("ble")
    return OpsSnapshot(
        now=now,
        started_at=started_at,
        store_id=cfg.device.store_id,
        device_id=cfg.device.device_id,
        device_name=cfg.device.name,
        overall=ctx.health.overall(),
        components=tuple(ctx.health.snapshot()),
        queue_depths=await _queue_depths(ctx),
        last_payment_at=facts.last_payment_at,
        last_payment_amount_twd=facts.last_payment_amount_twd,
        last_payment_result=facts.last_payment_result,
        last_sync_at=facts.last_sync_at,
        beacons=tuple(
            beacon_states(
                cfg.ble.store_beacon_hwids,
                facts.beacons_last_heard,
                now=now,
                silent_after=cfg.ble.beacon_silent_after_s,
                ble_detail=ble.detail if ble is not None else None,
            )
        ),
    )


# ---------------------------------------------------------------- /metrics


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def render_metrics(snap: OpsSnapshot) -> str:
    """Prometheus text exposition (version 0.0.4): HELP and TYPE before each family."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[Mapping[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            number = float(value)
            text = str(int(number)) if number.is_integer() else repr(number)
            lines.append(f"{name}{_labels(labels)} {text}")

    ident = {"store_id": snap.store_id, "device_id": snap.device_id, "version": __version__}
    family("shopedge_info", "gauge", "Agent identity and version (always 1).", [(ident, 1)])
    family(
        "shopedge_start_time_seconds", "gauge", "When the agent started (unix time).", [({}, snap.started_at)]
    )
    family(
        "shopedge_health_level",
        "gauge",
        "Health per component: 0 green, 1 amber, 2 red.",
        [({"component": c.name}, _LEVEL_VALUE[c.level]) for c in snap.components],
    )
    family(
        "shopedge_overall_health_level",
        "gauge",
        "Worst component health: 0 green, 1 amber, 2 red.",
        [({}, _LEVEL_VALUE[snap.overall])],
    )
    if snap.queue_depths is not None:
        family(
            "shopedge_outbox_depth",
            "gauge",
            "Records waiting in the outbox, per stream.",
            [({"stream": s}, d) for s, d in sorted(snap.queue_depths.items())],
        )
    if snap.last_payment_at is not None:
        family(
            "shopedge_last_payment_time_seconds",
            "gauge",
            "When the last payment finished (unix time).",
            [({"result": snap.last_payment_result or ""}, snap.last_payment_at)],
        )
    if snap.last_sync_at is not None:
        family(
            "shopedge_last_sync_time_seconds",
            "gauge",
            "When the broker last acknowledged an upload (unix time).",
            [({}, snap.last_sync_at)],
        )
    family(
        "shopedge_store_beacon_last_heard_time_seconds",
        "gauge",
        "When each store beacon was last heard (unix time; absent if never).",
        [({"hwid": b.hwid}, b.last_heard) for b in snap.beacons if b.last_heard is not None],
    )
    family(
        "shopedge_store_beacon_silent",
        "gauge",
        "1 when a store beacon has been unheard longer than ble.beacon_silent_after_s.",
        [({"hwid": b.hwid}, 1 if b.silent else 0) for b in snap.beacons],
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- /status


def _ago(now: float, then: float | None) -> str:
    if then is None:
        return "never"
    seconds = max(0, int(now - then))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def render_status_html(snap: OpsSnapshot) -> str:
    """A small page that reloads itself every REFRESH_S seconds; every value is escaped."""
    e = html.escape
    rows = "".join(
        f'<tr class="{e(c.level)}"><td>{e(c.name)}</td><td>{e(c.level)}</td><td>{e(c.detail)}</td>'
        f"<td>{_ago(snap.now, c.since)}</td></tr>"
        for c in snap.components
    )
    if snap.queue_depths is None:
        queue = "<p>outbox not open</p>"
    else:
        queue = (
            "<table><tr><th>stream</th><th>waiting</th></tr>"
            + "".join(f"<tr><td>{e(s)}</td><td>{d}</td></tr>" for s, d in sorted(snap.queue_depths.items()))
            + "</table>"
        )
    if snap.last_payment_at is None:
        payment = "none since start"
    else:
        payment = (
            f"{_ago(snap.now, snap.last_payment_at)}: NT${snap.last_payment_amount_twd} "
            f"{e(snap.last_payment_result or '')}"
        )
    beacons = (
        "".join(
            f'<tr class="{"red" if b.silent else "green"}"><td>{e(b.hwid)}</td>'
            f"<td>{'silent' if b.silent else 'heard'}</td><td>{_ago(snap.now, b.last_heard)}</td></tr>"
            for b in snap.beacons
        )
        or '<tr><td colspan="3">no store beacon configured (ble.store_beacon_hwids)</td></tr>'
    )
    title = f"ShopEdge {e(snap.store_id)}/{e(snap.device_id)}"
    uptime = _ago(snap.now, snap.started_at).removesuffix(" ago")
    return f"""<!doctype html>
<html lang="zh-TW"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
.green{{background:#e6f4ea}} .amber{{background:#fff4d6}} .red{{background:#fde2e1}}
</style></head><body>
<h1 class="{e(snap.overall)}">{title}: {e(snap.overall)}</h1>
<p>{e(snap.device_name)} · version {e(__version__)} · up {uptime}</p>
<h2>元件 Components</h2>
<table><tr><th>component</th><th>level</th><th>detail</th><th>since</th></tr>{rows}</table>
<h2>佇列 Outbox</h2>{queue}
<h2>付款 Last payment</h2><p>{payment}</p>
<h2>同步 Last sync</h2><p>{_ago(snap.now, snap.last_sync_at)}</p>
<h2>店內 Beacon</h2>
<table><tr><th>HWID</th><th>state</th><th>last heard</th></tr>{beacons}</table>
</body></html>
"""


def add_ops_routes(app: web.Application, ctx: AgentContext) -> None:
    """Add GET /status, /status.json and /metrics to an aiohttp app (the POS API mounts them)."""
    started_at = time.time()

    async def status(request: web.Request) -> web.Response:
        snap = await collect(ctx, started_at=started_at)
        return web.Response(text=render_status_html(snap), content_type="text/html", charset="utf-8")

    async def status_json(request: web.Request) -> web.Response:
        return web.json_response((await collect(ctx, started_at=started_at)).as_json())

    async def metrics(request: web.Request) -> web.Response:
        snap = await collect(ctx, started_at=started_at)
        return web.Response(
            body=render_metrics(snap).encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    app.router.add_get("/status", status)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/metrics", metrics)
