"""A recorded conversion feeds the funnel and earns the welcome coupon: the shopper's binding
message (with a reply token the Messaging emulator issued) is answered with the coupon, free,
by reply; a replay earns nothing."""

from __future__ import annotations

import time
from pathlib import Path

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from emulators.messaging import MessagingEmulator, running_emulator
from emulators.messaging.webhooks import new_user_id, text_message_event
from membership.binding import URL_PROMPT, issue_binding
from membership.conversion import ConversionConsumer, ConversionStatus
from membership.coupons import CouponService, facts_since_blocking
from offline_queue import Outbox


async def test_conversion_feeds_the_funnel_and_replies_with_the_coupon(tmp_path: Path) -> None:
    emulator = MessagingEmulator(access_tokens={"tok"})
    async with running_emulator(emulator) as (_, base_url):
        config = parse_config(
            {
                "device": {"store_id": "store-001", "device_id": "counter-1"},
                "storage": {"state_dir": str(tmp_path)},
                "line": {"api_base": base_url, "channel_access_token": "tok", "oa_basic_id": "@shopedge"},
                "binding": {"key": "k" * 32},
                "campaigns": [{"name": "welcome"}],
            },
            environ={},
        )
        db = open_state_db(config.db_path)
        migrate(db)
        outbox = await Outbox.open(config.db_path)
        ctx = AgentContext(config=config, db=db)
        ctx.services["outbox"] = outbox
        coupons = CouponService(ctx, outbox=outbox)
        try:
            user = new_user_id()
            token, _ = issue_binding(config, "A-1", time.time())
            event = text_message_event(user, URL_PROMPT + token, reply_token=emulator.issue_reply_token(user))
            data = {"event": event, "relay": {"received_at": time.time(), "new_follower": True}}
            consumer = ConversionConsumer(ctx)
            assert (await consumer.handle(data)).status is ConversionStatus.RECORDED
            [delivery] = emulator.deliveries
            assert (delivery.via, delivery.to) == ("reply", user)
            kinds = sorted(f.kind.value for f in facts_since_blocking(db, 0))
            assert kinds == ["binding_message", "bound_member", "coupon_replied", "new_friend"]
            replay = text_message_event(user, URL_PROMPT + token)
            assert (await consumer.handle({"event": replay})).status is ConversionStatus.REJECTED
            assert len(emulator.deliveries) == 1
            assert len(facts_since_blocking(db, 0)) == 4
        finally:
            await coupons.aclose()
            await outbox.close()
            db.close()
