"""Sync benchmark: drain 100,000 queued events from the real outbox to a local Mosquitto.

Compares, in one run against the same broker and with the same in-flight window:
- `raw_msgs_per_s`: a bare aiomqtt QoS 1 publish loop (no outbox, no acks to SQLite), run
  before and after the unbatched drain (mean of the two);
- `events_per_s`: the agent's uplink, one event per message (batch_max = 1);
- `batched_events_per_s`: the agent's uplink with batching (batch_max = 50).
The uplink figures include everything the agent really does: outbox claims and acks (SQLite,
synchronous=FULL), per-stream seq bookkeeping, envelopes, and waiting for every PUBACK.
Filling the outbox is timed separately (`fill_s`) and not counted.

Usage: python bench/sync_bench.py [--events N] [--window W] [--batch B]; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import Envelope, SyncService, encode_message, format_ts
from offline_queue import Outbox
from tests.integration.sync_brokers import Broker, make_mosquitto

PAYLOAD = {"order_id": "ORD-20261123-000123", "amount_twd": 180, "items": 3, "method": "linepay"}


async def raw_loop(broker: Broker, events: int, window: int) -> float:
    """Messages/s of a bare aiomqtt QoS 1 loop with `window` publishes awaiting PUBACK."""
    payload = encode_message(
        [Envelope(id=str(uuid.uuid4()), kind="sale", ts=format_ts(time.time()), seq=1, data=PAYLOAD)]
    )
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier="bench-raw",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=window,
    ) as client:
        client.pending_calls_threshold = window + 1  # the window is intended, not a warning
        slots = asyncio.Semaphore(window)

        async def one() -> None:
            try:
                await client.publish("shopedge/v1/bench/raw/up/sale", payload, qos=1)
            finally:
                slots.release()

        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(events):
                await slots.acquire()
                group.create_task(one())
        return events / (time.perf_counter() - start)


async def fill(outbox: Outbox, events: int) -> float:
    start = time.perf_counter()
    for base in range(0, events, 1000):
        await asyncio.gather(
            *(outbox.put("sale", {**PAYLOAD, "n": n}) for n in range(base, min(events, base + 1000)))
        )
    return time.perf_counter() - start


async def drain(broker: Broker, workdir: Path, events: int, window: int, batch: int) -> dict[str, float]:
    config = parse_config(
        {
            "device": {"store_id": "bench", "device_id": f"dev-b{batch}"},
            "storage": {"state_dir": str(workdir)},
            "mqtt": {"host": broker.host, "port": broker.port, "max_inflight": window, "batch_max": batch},
        },
        environ={},
    )
    engine = open_state_db(config.db_path)
    migrate(engine)
    outbox = await Outbox.open(config.db_path)
    try:
        fill_s = await fill(outbox, events)
        ctx = AgentContext(config=config, db=engine, services={"outbox": outbox})
        service = SyncService(ctx)
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.connected.wait(), 10)
        start = time.perf_counter()
        while await outbox.depth():  # noqa: ASYNC110 - the outbox has no "drained" event
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert service.uplink is not None
        return {
            "events_per_s": events / elapsed,
            "messages": service.uplink.stats.messages,
            "fill_s": fill_s,
            "drain_s": elapsed,
        }
    finally:
        await outbox.close()
        engine.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        broker = make_mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            # The raw loop runs before and after the unbatched drain and the mean is the
            # reference, so load from other processes on a shared machine hits both sides.
            raw_before = await raw_loop(broker, args.events, args.window)
            single = await drain(broker, Path(tmp) / "single", args.events, args.window, 1)
            raw_after = await raw_loop(broker, args.events, args.window)
            batched = await drain(broker, Path(tmp) / "batched", args.events, args.window, args.batch)
            raw = (raw_before + raw_after) / 2
        finally:
            broker.stop()
    print(
        json.dumps(
            {
                "bench": "sync",
                "events": args.events,
                "window": args.window,
                "batch_max": args.batch,
                "raw_msgs_per_s": round(raw),
                "raw_runs_msgs_per_s": [round(raw_before), round(raw_after)],
                "events_per_s": round(single["events_per_s"]),
                "ratio_unbatched_to_raw": round(single["events_per_s"] / raw, 3),
                "batched_events_per_s": round(batched["events_per_s"]),
                "ratio_batched_to_raw": round(batched["events_per_s"] / raw, 3),
                "batched_messages": batched["messages"],
                "fill_s": round(single["fill_s"], 2),
                "drain_s": round(single["drain_s"], 2),
                "batched_drain_s": round(batched["drain_s"], 2),
                "broker": "mosquitto",
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
