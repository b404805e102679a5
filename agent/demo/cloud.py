"""Demo steps for the chain's cloud side: an ingest worker on the demo's broker and a SQLite
fleet database in `STATE_DIR/cloud`, and at the end the fleet report read back from it.

The worker joins first, so the broker has its shared subscription before the first payment
goes up; the last step waits until the cloud has the visit's payment, conversion and coupon,
then prints the report. Without a broker the cloud cannot see anything: the step says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, select

if TYPE_CHECKING:
    from agent.demo import DemoRun
    from cloud.ingest import IngestWorker

__all__ = ["step_cloud_ingest", "step_cloud_saw_visit"]


class CloudDemo:
    """The running worker; `cleanup` is called by the demo's helper shutdown."""

    def __init__(
        self, worker: IngestWorker, task: asyncio.Task[None], engine: Engine, started: float
    ) -> None:
        self.worker, self.task, self.engine, self.started = worker, task, engine, started

    async def cleanup(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.engine.dispose()


async def step_cloud_ingest(run: DemoRun) -> str:
    from agent.demo import DemoStepFailed
    from cloud.fleet_config import parse_cloud_config
    from cloud.fleet_db import migrate_fleet, open_fleet_engine
    from cloud.ingest import IngestWorker

    if run.extras.get("broker") is False:
        return "no broker: the cloud side has nothing to ingest"
    state = run.config.storage.state_dir / "cloud"
    mqtt = run.config.mqtt
    config = parse_cloud_config(
        {
            "cloud": {"state_dir": str(state), "worker_id": "demo", "batch_wait_ms": 20},
            "mqtt": {"host": mqtt.host, "port": mqtt.port, "session_expiry_s": 60},
        },
        environ={},
    )
    engine = open_fleet_engine(config.cloud.effective_database_url)
    await asyncio.to_thread(migrate_fleet, engine)
    worker = IngestWorker(config, engine, client_id=config.cloud.client_id())
    task = asyncio.create_task(worker.run(), name="shopedge.demo.cloud-ingest")
    run.extras["cloud"] = CloudDemo(worker, task, engine, time.time())
    deadline = time.monotonic() + 10
    while worker.session is None or not worker.session.subscribed.is_set():
        if task.done() or time.monotonic() > deadline:
            raise DemoStepFailed(f"the ingest worker did not subscribe at {mqtt.host}:{mqtt.port}")
        await asyncio.sleep(0.05)
    where = config.cloud.effective_database_url
    return f"worker {worker.client_id} in group {config.cloud.group}, fleet DB {where}"


def _seen_blocking(engine: Engine, store_id: str, since: float) -> dict[str, int]:
    from cloud.fleet_db.tables import fleet_facts

    with engine.connect() as conn:
        rows = conn.execute(
            select(fleet_facts.c.kind, func.count())
            .where(fleet_facts.c.store_id == store_id, fleet_facts.c.at >= since)
            .group_by(fleet_facts.c.kind)
        )
        return {str(kind): int(count) for kind, count in rows}


async def step_cloud_saw_visit(run: DemoRun) -> str:
    """Waits (30 s at most) until the cloud has the payment, the conversion and a coupon."""
    from agent.demo import DemoStepFailed
    from cloud.fleet_config import ReportConfig
    from cloud.report import format_report, load_report_blocking

    cloud = run.extras.get("cloud")
    if not isinstance(cloud, CloudDemo):
        return "no broker: the fleet report stays empty until the records are synced"
    store = run.config.device.store_id
    since = cloud.started - 300
    wanted = {"payment": "payment", "bound_member": "conversion", "coupon": "coupon"}
    deadline = time.monotonic() + 30
    while True:
        seen = await asyncio.to_thread(_seen_blocking, cloud.engine, store, since)
        coupons = sum(n for kind, n in seen.items() if kind.startswith("coupon_"))
        missing = [
            label for key, label in wanted.items() if (coupons if key == "coupon" else seen.get(key, 0)) == 0
        ]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise DemoStepFailed(
                f"the cloud has not seen the visit's {', '.join(missing)}"
                f" (worker stats {cloud.worker.stats.as_dict()})"
            )
        await asyncio.sleep(0.2)
    rows = await asyncio.to_thread(
        load_report_blocking, cloud.engine, since=since, now=time.time(), config=ReportConfig(), store=store
    )
    summary = (
        f"cloud stored {cloud.worker.stats.stored} envelopes: {seen.get('payment', 0)} payment(s), "
        f"{seen.get('bound_member', 0)} conversion(s), {coupons} coupon event(s)"
    )
    return summary + "\n" + "\n".join(f"        {line}" for line in format_report(rows).splitlines())
