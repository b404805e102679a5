"""Demo steps of the coupons capability: the welcome coupon, redemption, the funnel report.

Each step uses the running agent (`run.ctx`) and the Messaging API emulator on the demo config's
`line.api_base` (started here unless another step already put it in `run.extras["messaging"]`).
When no earlier step left a conversion in `run.extras["conversion"]` (a `WelcomeRequest`), the
shopper's visit is simulated: its payment and binding facts are recorded and labelled as such.
"""

from __future__ import annotations

import asyncio
import hashlib
from urllib.parse import urlsplit

import aiohttp

from agent.config import split_listen
from agent.demo import DemoRun, DemoStepFailed, Step
from emulators.messaging import MessagingEmulator, serve
from membership.coupons._funnel import Fact, FactKind, facts_since_blocking, funnel_rows, funnel_total
from membership.coupons._ledger import LedgerState, get_blocking
from membership.coupons._redeem import REDEEM_PATH
from membership.coupons._report import render_chart
from membership.coupons._service import DeliveryStatus, WelcomeRequest, deliver_welcome, record_fact

__all__ = ["COUPON_STEPS", "step_messaging_emulator"]

DEMO_AMOUNT_TWD = 180


async def _emulator(run: DemoRun) -> MessagingEmulator:
    emulator = run.extras.get("messaging")
    if isinstance(emulator, MessagingEmulator):
        return emulator
    config = run.config
    if not config.line.api_base:
        raise DemoStepFailed("line.api_base is not set: the demo needs the Messaging API emulator")
    url = urlsplit(config.line.api_base)
    emulator = MessagingEmulator(
        access_tokens={config.line.channel_access_token.get_secret_value()},
        bot_basic_id=f"@{config.line.oa_basic_id or 'shopedge'}",
    )
    runner, _ = await serve(emulator, host=url.hostname or "127.0.0.1", port=url.port or 80)
    run.extras["messaging"] = emulator
    run.extras["messaging_runner"] = runner
    return emulator


async def _simulated_conversion(run: DemoRun, emulator: MessagingEmulator) -> WelcomeRequest:
    device = run.config.device
    order_id = f"demo-{int(run.ctx.wall_clock())}"
    user = "U" + hashlib.sha256(order_id.encode()).hexdigest()[:32]
    now = run.ctx.wall_clock()

    def fact(kind: FactKind, **extra: object) -> Fact:
        return Fact(
            kind=kind,
            store_id=device.store_id,
            device_id=device.device_id,
            at=now,
            order_id=order_id,
            **extra,  # type: ignore[arg-type]
        )

    await record_fact(run.ctx, fact(FactKind.PAYMENT, amount_twd=DEMO_AMOUNT_TWD, categories=("coffee",)))
    await record_fact(run.ctx, fact(FactKind.BINDING_QR_SHOWN))
    for kind in (FactKind.BINDING_MESSAGE, FactKind.NEW_FRIEND, FactKind.BOUND_MEMBER):
        await record_fact(run.ctx, fact(kind, line_user_id=user))
    return WelcomeRequest(
        line_user_id=user,
        store_id=device.store_id,
        device_id=device.device_id,
        order_id=order_id,
        reply_token=emulator.issue_reply_token(user),
        reply_token_received_at=now,
        is_new_friend=True,
    )


async def step_messaging_emulator(run: DemoRun) -> str:
    """Start the Messaging API stand-in before the shopper's message, so the reply can go out."""
    emulator = await _emulator(run)
    quota = f"{emulator.quota_type} {emulator.quota_value}"
    return f"Messaging API emulator on {run.config.line.api_base} (monthly quota: {quota})"


async def _delivered_to_joined_user(run: DemoRun, emulator: MessagingEmulator, user: str) -> str:
    """The agent sent the coupon itself when the conversion arrived: check it went once, by reply."""
    campaign = next(c.name for c in run.config.campaigns if c.enabled)
    deadline = run.ctx.clock() + 10
    row = None
    while run.ctx.clock() < deadline:
        row = await asyncio.to_thread(get_blocking, run.ctx.db, campaign, user)
        if row is not None and row.state is LedgerState.SENT:
            break
        await asyncio.sleep(0.1)
    if row is None or row.state is not LedgerState.SENT:
        raise DemoStepFailed(f"no welcome coupon sent to the shopper: ledger {row}")
    sent = [d.via for d in emulator.deliveries_to(user)]
    if sent != ["reply"]:
        raise DemoStepFailed(f"the emulator saw {sent} for the shopper, expected one reply")
    run.extras["coupon_code"] = row.code
    return f"coupon {row.code[:5]}-{row.code[5:]} delivered by reply (free), once, by the agent"


async def step_welcome_coupon(run: DemoRun) -> str:
    emulator = await _emulator(run)
    joined = run.extras.get("joined_user")
    if isinstance(joined, str):
        return await _delivered_to_joined_user(run, emulator, joined)
    conversion = run.extras.get("conversion")
    simulated = not isinstance(conversion, WelcomeRequest)
    if not isinstance(conversion, WelcomeRequest):
        conversion = await _simulated_conversion(run, emulator)
    result = await deliver_welcome(run.ctx, conversion)
    if result.status is not DeliveryStatus.REPLIED or result.code is None:
        raise DemoStepFailed(f"expected a free reply, got {result.status}: {result.detail}")
    sent = emulator.deliveries_to(conversion.line_user_id)
    if [d.via for d in sent] != ["reply"]:
        raise DemoStepFailed(f"the emulator saw {[d.via for d in sent]} for the shopper, expected one reply")
    run.extras["coupon_code"] = result.code
    note = " (simulated conversion)" if simulated else ""
    return f"coupon {result.code[:5]}-{result.code[5:]} delivered by reply (free){note}"


async def step_redeem(run: DemoRun) -> str:
    code = run.extras.get("coupon_code")
    if not isinstance(code, str):
        raise DemoStepFailed("no coupon was delivered in an earlier step")
    host, port = split_listen(run.config.pos.listen)
    headers = {"Authorization": f"Bearer {run.config.pos.token.get_secret_value()}"}
    body = {"code": f"{code[:5]}-{code[5:]}", "order_id": "demo-redeem-1"}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        try:
            async with http.post(f"http://{host}:{port}{REDEEM_PATH}", json=body) as response:
                status, answer = response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise DemoStepFailed(f"the POS API at {host}:{port} did not answer: {exc!r}") from None
    if status != 200:
        raise DemoStepFailed(f"redeem answered {status}: {answer}")
    return f"till redeemed {body['code']}: {answer.get('offer', '')}"


async def step_funnel_report(run: DemoRun) -> str:
    config = run.config
    facts = await asyncio.to_thread(facts_since_blocking, run.ctx.db, run.ctx.wall_clock() - 86400)
    rows = funnel_rows(
        facts,
        zone=config.coupons.timezone,
        fee_rate=config.linepay.fee_rate,
        message_cost_twd={c.name: c.message_cost_twd for c in config.campaigns},
    )
    total = funnel_total(rows, store_id=config.device.store_id)
    if total.cost_per_friend_twd is None:
        raise DemoStepFailed("no new friend was recorded, so there is no cost per friend")
    chart = config.storage.state_dir / "funnel.png"
    image = render_chart(
        total, title=f"{config.device.name}: 櫃台漏斗 Counter funnel", font_path=config.display.font_path
    )
    await asyncio.to_thread(image.save, chart, "PNG")
    return (
        f"payments {total.payments}, new friends {total.new_friends}, bound {total.bound_members}, "
        f"coupons {total.coupons_replied} replied / {total.coupons_pushed} pushed, "
        f"redeemed {total.coupons_redeemed}, "
        f"cost per friend NT${total.cost_per_friend_twd:.2f}; chart {chart}"
    )


COUPON_STEPS: list[tuple[str, Step]] = [
    ("welcome coupon, once, free by reply", step_welcome_coupon),
    ("coupon redeemed at the till", step_redeem),
    ("funnel report", step_funnel_report),
]
