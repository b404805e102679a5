"""The HQ page (`shopedge cloud serve`): read-only, the fleet table and the funnel per store.

One aiohttp app over the fleet database (reads in a thread). Every page and API needs the
`[hq] token`: as `Authorization: Bearer TOKEN` (scripts), or typed once into the login form,
which sets an HttpOnly, SameSite=Strict cookie holding an HMAC of the token (never the token).
Offline and silent devices are shown red, backlogged ones amber. Serve it behind TLS.

Routes: `/` (page), `/login`, `/logout`, `/chart.png?since=7d&store=S`, `/api/devices`,
`/api/report?since=7d&store=S`, `/healthz` (no token: for the load balancer).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import io
import json
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import Engine

from cloud.devices import DeviceRow, age_text, load_devices_blocking, quarantine_count_blocking
from cloud.fleet_config import CloudConfig
from cloud.report import FleetRow, load_report_blocking, parse_since, render_fleet_chart

__all__ = ["build_hq_app", "serve_hq"]

COOKIE = "shopedge_hq"
CONFIG_KEY: web.AppKey[CloudConfig] = web.AppKey("config", CloudConfig)
ENGINE_KEY: web.AppKey[Engine] = web.AppKey("engine", Engine)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _session_value(token: str) -> str:
    return hmac.new(token.encode(), b"shopedge-hq-session", hashlib.sha256).hexdigest()


def _authorised(request: web.Request) -> bool:
    token = request.app[CONFIG_KEY].hq.token.get_secret_value()
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), _session_value(token).encode())


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in ("/login", "/healthz") or _authorised(request):
        response = await handler(request)
    elif request.path.startswith("/api/") or request.path.endswith(".png"):
        response = web.json_response({"error": "a bearer token is required"}, status=401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="shopedge-hq"'
    else:
        response = web.Response(text=_login_page(), content_type="text/html", status=401)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def _login(request: web.Request) -> web.StreamResponse:
    if request.method == "GET":
        return web.Response(text=_login_page(), content_type="text/html")
    form = await request.post()
    given = str(form.get("token", ""))
    token = request.app[CONFIG_KEY].hq.token.get_secret_value()
    if not hmac.compare_digest(given.encode(), token.encode()):
        await asyncio.sleep(0.5)  # slows guessing
        return web.Response(text=_login_page("wrong token / 權杖錯誤"), content_type="text/html", status=401)
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE,
        _session_value(token),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=12 * 3600,
    )
    raise response


async def _logout(_request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE)
    raise response


async def _healthz(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


def _period(request: web.Request) -> tuple[str, float, float, str | None]:
    config = request.app[CONFIG_KEY]
    text = request.query.get("since", "7d")
    now = time.time()
    try:
        since = parse_since(text, now=now, zone=config.report.timezone)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    store = request.query.get("store") or None
    return text, since, now, store


async def _load(request: web.Request) -> tuple[list[DeviceRow], list[FleetRow], int, str, str | None]:
    config, engine = request.app[CONFIG_KEY], request.app[ENGINE_KEY]
    text, since, now, store = _period(request)

    def read() -> tuple[list[DeviceRow], list[FleetRow], int]:
        return (
            load_devices_blocking(engine, now=now, config=config.cloud),
            load_report_blocking(engine, since=since, now=now, config=config.report, store=store),
            quarantine_count_blocking(engine),
        )

    devices, rows, quarantined = await asyncio.to_thread(read)
    return devices, rows, quarantined, text, store


async def _api_devices(request: web.Request) -> web.StreamResponse:
    devices, _rows, quarantined, _text, _store = await _load(request)
    return web.json_response({"devices": [d.as_dict() for d in devices], "quarantined": quarantined})


async def _api_report(request: web.Request) -> web.StreamResponse:
    _devices, rows, _q, _text, _store = await _load(request)
    return web.json_response([r.as_dict() for r in rows], dumps=lambda v: json.dumps(v, ensure_ascii=False))


async def _chart(request: web.Request) -> web.StreamResponse:
    config, engine = request.app[CONFIG_KEY], request.app[ENGINE_KEY]
    text, since, now, store = _period(request)

    def draw() -> bytes:
        rows = load_report_blocking(engine, since=since, now=now, config=config.report, store=store)
        title = "連鎖門市漏斗 Fleet funnel" + (f" · {store}" if store else "")
        image = render_fleet_chart(rows, title=f"{title} ({text})")
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    return web.Response(body=await asyncio.to_thread(draw), content_type="image/png")


async def _page(request: web.Request) -> web.StreamResponse:
    devices, rows, quarantined, text, store = await _load(request)
    return web.Response(text=_fleet_page(devices, rows, quarantined, text, store), content_type="text/html")


async def serve_hq(config: CloudConfig, engine: Engine) -> None:
    """Serve until cancelled.

    Raises:
        OSError: the listen address is taken or not allowed.
    """
    from base.config import split_listen

    host, port = split_listen(config.hq.listen)
    runner = web.AppRunner(build_hq_app(config, engine), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def build_hq_app(config: CloudConfig, engine: Engine) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[CONFIG_KEY] = config
    app[ENGINE_KEY] = engine
    app.router.add_get("/", _page)
    app.router.add_route("*", "/login", _login)
    app.router.add_get("/logout", _logout)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/chart.png", _chart)
    app.router.add_get("/api/devices", _api_devices)
    app.router.add_get("/api/report", _api_report)
    return app


# ---------------------------------------------------------------- HTML

_STYLE = """
body{font-family:"Noto Sans CJK TC","Noto Sans TC",sans-serif;margin:24px;color:#111;background:#fff}
h1{font-size:24px;margin:0 0 4px} .sub{color:#555;margin:0 0 16px}
table{border-collapse:collapse;font-size:14px;margin-bottom:20px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left} th{background:#f2f2f2}
tr.offline td{background:#f8c9c4} tr.backlogged td{background:#ffe0a3}
tr.offline.backlogged td{background:#f8c9c4}
.tag{font-weight:bold} img{border:1px solid #ddd;max-width:100%}
form.login{margin-top:60px} input{font-size:16px;padding:6px}
"""


def _login_page(error: str = "") -> str:
    note = f'<p class="error" style="color:#b00">{html.escape(error)}</p>' if error else ""
    return (
        '<!doctype html><html lang="zh-Hant"><head><meta charset="utf-8"><title>ShopEdge HQ</title>'
        f"<style>{_STYLE}</style></head><body><h1>ShopEdge 總部 HQ</h1>{note}"
        '<form class="login" method="post" action="/login"><label>權杖 Token '
        '<input type="password" name="token" autocomplete="current-password" autofocus></label> '
        '<button type="submit">登入 Sign in</button></form></body></html>'
    )


def _fleet_page(
    devices: list[DeviceRow], rows: list[FleetRow], quarantined: int, since: str, store: str | None
) -> str:
    now = time.time()
    esc = html.escape
    body = []
    offline = sum(1 for d in devices if d.presence in ("offline", "silent"))
    backlogged = sum(1 for d in devices if d.backlogged)
    body.append(
        f'<p class="sub">{len(devices)} 台裝置 devices · <span class="tag">{offline}</span> 離線 offline · '
        f'<span class="tag">{backlogged}</span> 積壓 backlogged · {quarantined} 隔離訊息 quarantined</p>'
    )
    body.append(
        '<table id="fleet"><tr><th>門市 Store</th><th>裝置 Device</th><th>狀態 Presence</th>'
        "<th>自 Since</th><th>最後 Last seen</th><th>版本 Version</th><th>待送 Outbox</th>"
        "<th>缺號 Missing seq</th><th>最後事件 Last events</th></tr>"
    )
    for d in devices:
        classes = []
        if d.presence in ("offline", "silent"):
            classes.append("offline")
        if d.backlogged:
            classes.append("backlogged")
        last = ", ".join(f"{s}#{i['last_seq']}" for s, i in sorted(d.streams.items()))
        body.append(
            f'<tr class="{" ".join(classes)}" data-device="{esc(d.store_id)}/{esc(d.device_id)}">'
            f"<td>{esc(d.store_id)}</td><td>{esc(d.device_id)}</td><td>{esc(d.presence)}</td>"
            f"<td>{age_text(now, d.since, suffix='')}</td><td>{age_text(now, d.last_seen, suffix='')}</td>"
            f"<td>{esc(d.agent_version or '-')}</td>"
            f"<td>{'-' if d.outbox_depth is None else d.outbox_depth}</td><td>{d.missing}</td>"
            f"<td>{esc(last)}</td></tr>"
        )
    body.append("</table>")
    body.append(
        '<table id="funnel"><tr><th>門市 Store</th><th>付款 Payments</th><th>NT$</th>'
        "<th>新好友 New friends</th><th>綁定 Bound</th><th>綁定率 Rate</th><th>兌換 Redeemed</th>"
        "<th>每友成本 NT$/friend</th></tr>"
    )
    for row in rows:
        if row.scope == "day":
            continue
        data = row.as_dict()
        name = "全部 Fleet" if row.scope == "fleet" else row.store_id
        rate = "-" if data["binding_rate"] is None else f"{data['binding_rate']:.0%}"
        cost = "-" if data["cost_per_friend_twd"] is None else f"{data['cost_per_friend_twd']:.2f}"
        body.append(
            f"<tr><td>{esc(name)}</td><td>{data['payments']}</td><td>{data['payments_twd']}</td>"
            f"<td>{data['new_friends']}</td><td>{data['bound_members']}</td><td>{rate}</td>"
            f"<td>{data['coupons_redeemed']}</td><td>{cost}</td></tr>"
        )
    body.append("</table>")
    query = f"since={esc(since)}" + (f"&amp;store={esc(store)}" if store else "")
    body.append(f'<img id="chart" alt="funnel per store" src="/chart.png?{query}">')
    return (
        '<!doctype html><html lang="zh-Hant"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="60"><title>ShopEdge HQ</title>'
        f"<style>{_STYLE}</style></head><body><h1>ShopEdge 總部 HQ · {esc(since)}</h1>"
        + "".join(body)
        + '<p><a href="/logout">登出 Sign out</a></p></body></html>'
    )
