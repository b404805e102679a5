"""Issue 14, item 8: with the replay driver the store beacon's "last heard" stays on the real
clock (a fast replay's virtual seconds used to push it into the future)."""

from __future__ import annotations

from agent.context import AgentContext
from agent.ops_http import ops_facts
from agent.wiring.ble import BLEPresence
from agent.wiring.presence_sink import MemorySink
from base.health import HealthBoard
from drivers.ble.replay import DEMO_CAPTURE, ReplaySource
from tests.unit.drivers.ble.fakes import FakeTimer
from tests.unit.test_wiring_ble import WALL0, config, run_for, stop


async def test_last_heard_is_never_in_the_future_at_replay_speed() -> None:
    timer = FakeTimer()
    ctx = AgentContext(
        config=config(replay_loop=False, replay_speed=50),
        db=None,  # type: ignore[arg-type]
        health=HealthBoard(),
        wall_clock=lambda: WALL0 + timer.t,  # the real clock moves with the fake timer
    )
    source = ReplaySource(DEMO_CAPTURE, speed=50, loop=False, timer=timer)
    component = BLEPresence(ctx, sink=MemorySink(), source=source)
    task = await run_for(component, timer, 4.0)  # 4 real seconds = 200 s of the capture
    heard = ops_facts(ctx).beacons_last_heard
    assert heard, "the demo capture has the store beacon"
    now = ctx.wall_clock()
    for hwid, at in heard.items():
        assert WALL0 <= at <= now, (hwid, at - now)
    await stop(task)
