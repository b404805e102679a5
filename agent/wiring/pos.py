"""The payments adapters: the POS API server with its payment reconciler (`PosBridge`), and the
barcode-scanner feed (`ScannerFeed`).

Owns composition only: builds the LINE Pay client, the journal and the service from the agent
context, fills the payments room's ports (the screen port, the paid hook that records funnel
facts, the binding URL from `membership.binding.binding_url_provider`, the member phone hash
from `membership.binding.phone_hasher`), reconciles unfinished payments before the API accepts
new work, and serves the API on `pos.listen`, with the coupon and ops routes mounted beside it.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from agent.context import AgentContext
from agent.live_config import live_config
from agent.ops_http import add_ops_routes, ops_facts
from base.config import split_listen
from base.health import Level
from membership.binding import binding_url_provider, phone_hasher
from membership.coupons import Fact, FactKind, add_coupon_routes, record_facts
from pos_bridge.api import LIMIT_KEY, create_pos_app
from pos_bridge.journal import Journal
from pos_bridge.linepay import LinePayClient
from pos_bridge.payment_flow import Payment, State
from pos_bridge.service import PaymentService

__all__ = ["PosBridge", "ScannerFeed"]

log = logging.getLogger(__name__)
HEALTH_INTERVAL_S = 5.0


class PosBridge:
    """POS HTTP API + payment service; reconciles every unfinished payment before serving."""

    name = "pos"

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.service: PaymentService | None = None
        self.url = ""
        # Set once the API serves: the late components (agent.wiring) start then.
        self.listening = asyncio.Event()

    async def run(self) -> None:
        ctx, config = self.ctx, self.ctx.config
        client = LinePayClient(config.linepay, config.timeouts, device_id=config.device.device_id)
        journal = Journal(
            ctx.db,
            outbox=lambda: ctx.services.get("outbox"),
            clock=ctx.wall_clock,
            on_health=self._journal_health,
        )
        service = PaymentService(
            config=config,
            journal=journal,
            client=client,
            display=lambda: ctx.services.get("screens"),
            binding_url=binding_url_provider(config, ctx.wall_clock),
            phone_hash=phone_hasher(config.binding.phone_salt.get_secret_value()),
            on_paid=self._record_paid,
            wall_clock=ctx.wall_clock,
        )
        app = create_pos_app(service, config)
        limit = app[LIMIT_KEY]
        live = live_config(ctx.services, config)
        live.follow("pos", ["pos.max_amount_twd"], lambda cfg: limit.set(cfg.pos.max_amount_twd))
        # Other capabilities' routes join this app here: the till's coupon routes, and the
        # technician's /status, /status.json and /metrics (no token: read-only, no secrets).
        add_coupon_routes(app, ctx)
        add_ops_routes(app, ctx)
        runner = web.AppRunner(app, access_log=None)
        host, port = split_listen(config.pos.listen)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(service.run(), name="shopedge.pos.payments")
                ctx.health.set(self.name, Level.AMBER, "reconciling unfinished payments")
                await service.ready.wait()
                await runner.setup()
                await web.TCPSite(runner, host, port).start()
                self.url = f"http://{host}:{runner.addresses[0][1]}"
                self.service = service
                ctx.services["payments"] = service
                log.info("POS API listening", extra={"url": self.url})
                self.listening.set()
                while True:
                    self._report(service)
                    await asyncio.sleep(HEALTH_INTERVAL_S)
        finally:
            live.unfollow("pos")
            ctx.services.pop("payments", None)
            self.service = None
            await runner.cleanup()
            await client.close()
            await journal.settle_marks()  # before the state DB closes under them

    def _journal_health(self, ok: bool, detail: str) -> None:
        """The payment journal's own writes on the board: red from a refused write until one commits."""
        if ok:
            self.ctx.health.set("journal", Level.GREEN, "payment journal writing")
        else:
            self.ctx.health.set("journal", Level.RED, detail)

    async def _record_paid(self, payment: Payment, binding_url: str | None) -> None:
        """Funnel facts for the report: the payment, and the binding QR shown with it."""
        device, now = self.ctx.config.device, self.ctx.wall_clock()
        ops_facts(self.ctx).record_payment(at=now, amount_twd=payment.paid_amount, result="paid")

        def fact(kind: FactKind, amount: int | None = None) -> Fact:
            return Fact(
                kind=kind,
                store_id=device.store_id,
                device_id=device.device_id,
                at=now,
                order_id=payment.order_id,
                amount_twd=amount,
            )

        facts = [fact(FactKind.PAYMENT, payment.paid_amount)]
        if binding_url:
            facts.append(fact(FactKind.BINDING_QR_SHOWN))
        await record_facts(self.ctx, facts)  # one transaction for the sale's facts

    def _report(self, service: PaymentService) -> None:
        config = self.ctx.config
        unknown = service.count(State.UNKNOWN)
        if not config.pos.token.get_secret_value():
            self.ctx.health.set(self.name, Level.AMBER, "pos.token not set: the till cannot authenticate")
        elif not (config.linepay.channel_id and config.linepay.channel_secret.get_secret_value()):
            self.ctx.health.set(self.name, Level.AMBER, "linepay.channel_id/channel_secret not set")
        elif unknown:
            self.ctx.health.set(self.name, Level.AMBER, f"{unknown} payment(s) being confirmed with LINE Pay")
        else:
            self.ctx.health.set(self.name, Level.GREEN, f"listening on {config.pos.listen}")


class ScannerFeed:
    """Hands every one-time key the barcode scanner reads to the sale waiting for one."""

    name = "scanner"

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        from drivers.scanner import open_scanner

        pos = self.ctx.config.pos
        scanner_source = open_scanner(
            pos.scanner, device=pos.scanner_device, replay_file=pos.scanner_replay_file
        )
        async with scanner_source as scanner:
            self.ctx.health.set(self.name, Level.GREEN, f"reading {self.ctx.config.pos.scanner}")
            async for key in scanner.codes():
                service = self.ctx.services.get("payments")
                if not isinstance(service, PaymentService):
                    log.warning("one-time key scanned before the POS API is up; scan again")
                    continue
                await service.key_scanned(key)
