"""The outbox's step in `shopedge demo`: a durable put, a deduplicated repeat, claim and ack."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from offline_queue import Outbox

if TYPE_CHECKING:
    from agent.demo import DemoRun

__all__ = ["step_outbox"]

DEMO_STREAM = "demo"  # not an uplink kind, so the MQTT uplink leaves it alone


async def step_outbox(run: DemoRun) -> str:
    """Put one critical record, repeat it with its dedupe key, claim it and ack it."""
    from agent.demo import DemoStepFailed

    box = run.ctx.services.get("outbox")
    if not isinstance(box, Outbox):
        raise DemoStepFailed("the daemon did not register ctx.services['outbox']")
    key = f"demo-{time.time_ns()}"
    started = time.perf_counter()
    rid = await box.put(DEMO_STREAM, {"what": "demo record", "key": key}, dedupe_key=key)
    put_ms = (time.perf_counter() - started) * 1000
    if await box.put(DEMO_STREAM, {"what": "repeat"}, dedupe_key=key) != rid:
        raise DemoStepFailed("a repeated dedupe key stored a second record")
    claimed = await box.claim(DEMO_STREAM, limit=10, lease=10)
    if [r.id for r in claimed] != [rid]:
        raise DemoStepFailed(f"claim returned {[r.id for r in claimed]}, expected [{rid}]")
    await box.ack([rid])
    pending = await box.depth()
    return f"record {rid} fsynced in {put_ms:.1f} ms, repeat deduplicated, claimed, acked; {pending} pending"
