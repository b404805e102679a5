"""The demo's operations step: what a technician would see on this device right now."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from agent.doctor import Status, run_checks
from agent.ops_http import collect, render_metrics

if TYPE_CHECKING:
    from agent.demo import DemoRun

__all__ = ["step_technician_view"]

# Local checks only: the credential rows need the emulators, which other steps exercise.
DEMO_CHECKS = ("state_dir", "fonts", "outbox")


async def step_technician_view(run: DemoRun) -> str:
    """Doctor's local rows pass and /metrics renders every component's health."""
    from agent.demo import DemoStepFailed

    rows = await run_checks(run.config, only=DEMO_CHECKS)
    failed = [f"{row.check}: {row.detail} ({row.hint})" for row in rows if row.status is Status.FAIL]
    if failed:
        raise DemoStepFailed("; ".join(failed))
    snap = await collect(run.ctx, started_at=time.time())
    metrics = render_metrics(snap)
    missing = [c.name for c in snap.components if f'component="{c.name}"' not in metrics]
    if missing:
        raise DemoStepFailed(f"metrics lack components: {missing}")
    beacons = ", ".join(f"{b.hwid} {'silent' if b.silent else 'heard'}" for b in snap.beacons) or "none"
    doctor = ", ".join(f"{r.check} {r.status}" for r in rows)
    return f"doctor {doctor}; status {snap.overall}; beacons {beacons}"
