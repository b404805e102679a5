"""Issue 14, item 1, for the coupon push jobs: a `coupon_job` record whose handling raises every
time is dead-lettered with its reason, and the pushes behind it still go out (real SQLite
outbox, the Messaging API emulator)."""

from __future__ import annotations

import json
import sqlite3

from base.health import Level
from membership.coupons import PUSH_STREAM, LedgerState, deliver_welcome
from tests.integration.test_coupons_delivery import Rig, rig

__all__ = ["rig"]  # the fixture, shared with the delivery tests


async def test_a_push_job_that_always_raises_is_dead_lettered_and_the_next_goes_out(rig: Rig) -> None:
    await deliver_welcome(rig.ctx, rig.request(20))
    await deliver_welcome(rig.ctx, rig.request(21))
    # the first job as an older agent (or a bug) left it: no messages to send
    with sqlite3.connect(rig.path) as conn:
        (record_id, payload), *_ = conn.execute(
            "SELECT id, payload FROM outbox WHERE stream = ? ORDER BY id", (PUSH_STREAM,)
        ).fetchall()
        broken = {k: v for k, v in json.loads(payload).items() if k != "messages"}
        conn.execute("UPDATE outbox SET payload = ? WHERE id = ?", (json.dumps(broken), record_id))
    await rig.drain()
    assert [d.to for d in rig.emulator.deliveries] == [rig.row(21).line_user_id]
    assert rig.row(21).state is LedgerState.SENT
    [letter] = await rig.outbox.dead_letters(PUSH_STREAM)
    assert letter.id == record_id and letter.reason == "permanent error: KeyError: 'messages'"
    health = rig.ctx.health.get("coupons")
    assert health is not None and health.level is Level.GREEN  # the later push went out


async def test_a_reply_token_half_a_minute_old_still_gets_the_free_reply(rig: Rig) -> None:
    """LINE: use a reply token within one minute. 35 s after the relay got the webhook the
    coupon still goes out as a free reply (the old 20 s window sent a paid push)."""
    from membership.coupons import DeliveryStatus

    result = await deliver_welcome(rig.ctx, rig.request(30, token=True, age=35))
    assert result.status is DeliveryStatus.REPLIED
    assert [d.via for d in rig.emulator.deliveries] == ["reply"] and rig.emulator.total_usage == 0
