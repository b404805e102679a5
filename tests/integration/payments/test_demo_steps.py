"""The payments demo steps against the real agent (in-process) and the LINE Pay emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.context import AgentContext
from agent.daemon import run_agent
from agent.demo import DemoRun, _write_demo_config
from agent.demo.payments import STEPS
from agent.supervisor import Supervisor


async def test_one_payment_by_each_method(tmp_path: Path) -> None:
    config_path, config = await asyncio.to_thread(_write_demo_config, tmp_path, 1883)
    started: asyncio.Future[tuple[AgentContext, Supervisor]] = asyncio.get_running_loop().create_future()
    agent = asyncio.create_task(run_agent(config, on_started=lambda c, s: started.set_result((c, s))))
    ctx, supervisor = await started
    run = DemoRun(config=config, config_path=config_path, ctx=ctx, supervisor=supervisor)
    try:
        summaries = [await step(run) for _, step in STEPS]
    finally:
        supervisor.stop()
        assert await agent == 0
        if "linepay" in run.extras:
            await run.extras["linepay"].stop()
    assert "paid 120 TWD" in summaries[1] and "paid 85 TWD" in summaries[2]
    charges = run.extras["linepay"].state.charges
    assert sorted(c.method for c in charges.values()) == ["offline", "online"]
    with ctx.db.transaction() as conn:  # the funnel counts both payments
        facts = conn.execute(
            "SELECT order_id, amount_twd FROM funnel_facts WHERE kind = 'payment'"
        ).fetchall()
    assert sorted((order, amount) for order, amount in facts) == sorted(
        (order_id, charge.amount) for order_id, charge in charges.items()
    )
