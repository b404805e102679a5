"""The demo's beacon step: the replayed shop is heard and the store's LINE Beacon is present."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from agent.wiring.ble import BLEPresence

if TYPE_CHECKING:
    from agent.demo import DemoRun

__all__ = ["step_beacons"]


async def step_beacons(run: DemoRun) -> str:
    """Waits (10 s at most) until the store beacon from `ble.store_beacon_hwids` is present."""
    from agent.demo import DemoStepFailed

    # BLE is a late component (agent.wiring): the supervisor holds its stand-in until it is built.
    listed = next((c for c in run.supervisor.components if c.name == "ble"), None)
    component = getattr(listed, "built", listed)
    if not isinstance(component, BLEPresence):
        raise DemoStepFailed("no BLE component is running")
    hwids = run.config.ble.store_beacon_hwids
    if not hwids:
        raise DemoStepFailed("ble.store_beacon_hwids is empty: no store beacon to look for")
    wanted = {f"line:{hwid}" for hwid in hwids}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        engine = component.engine
        if engine is not None and wanted <= set(engine.present()):
            present = engine.present()
            health = run.ctx.health.get(component.name)
            state = f"{health.level}" if health else "unknown"
            return (
                f"store beacon {', '.join(sorted(hwids))} present; {len(present)} beacons near the counter, "
                f"{engine.footfall_so_far()} devices this 5 min (ble {state})"
            )
        await asyncio.sleep(0.1)
    health = run.ctx.health.get(component.name)
    detail = f"{health.level}: {health.detail}" if health else "no health reported"
    raise DemoStepFailed(f"store beacon {', '.join(hwids)} not heard within 10 s (ble {detail})")
