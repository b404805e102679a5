"""Fault test: two workers share the group; 20 times one of them is SIGKILLed mid-batch and
restarted (same client id) while devices keep publishing. Every envelope is stored exactly
once, the stream positions count each once, and the kills really hit unacknowledged
messages (some were delivered twice)."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud.fleet_db import migrate_fleet, open_fleet_engine
from cloud.fleet_db.tables import envelopes, stream_positions
from tests.cloud._fleet import Publisher, Worker, fleet_broker, wait_until, write_cloud_toml
from tests.cloud._messages import envelope, message, payment

DEVICES = 12
PER_DEVICE = 400  # envelopes per device: 4,800 in all
KILLS = 20


def _traffic() -> tuple[list[tuple[str, bytes]], set[str]]:
    messages, ids = [], set()
    for d in range(DEVICES):
        device = f"c{d:02d}"
        seq = 1
        while seq <= PER_DEVICE:
            size = 1 if seq % 3 else 5  # single events and backlog batches, as a device sends
            batch = [
                envelope("payment", s, payment(f"{device}-{s}", 100, 1.0e9), device=device, store="s1")
                for s in range(seq, min(seq + size, PER_DEVICE + 1))
            ]
            ids.update(e.id for e in batch)
            messages.append(message(*batch, store="s1", device=device))
            seq += size
    random.Random(7).shuffle(messages)
    return messages, ids


def _total_received(worker: Worker) -> int:
    total = 0
    for run in worker.text().split("--- start ")[1:]:
        found = re.findall(r"\"received\"?[=:] ?(\d+)", run)
        total += int(found[-1]) if found else 0
    return total


@pytest.mark.slow
def test_sigkill_mid_batch_twenty_times_stores_every_envelope_once(tmp_path: Path, fleet_url: str) -> None:
    engine = open_fleet_engine(fleet_url)
    migrate_fleet(engine)
    traffic, ids = _traffic()
    with fleet_broker(tmp_path) as port:
        toml = write_cloud_toml(tmp_path, database_url=fleet_url, port=port, batch_max=100, batch_wait_ms=30)
        workers = [Worker(toml, "a", tmp_path), Worker(toml, "b", tmp_path)]
        publisher = Publisher(port)
        done, kills_done = threading.Event(), threading.Event()
        progress = {"kills": 0}

        def publish() -> None:
            # Paced by the kills, not the clock (a loaded machine restarts workers slowly): the
            # feed never runs ahead of the kill loop, so every kill lands on live traffic.
            for start in range(0, len(traffic), 4):
                while not kills_done.is_set() and start >= len(traffic) * (progress["kills"] + 1) / (
                    KILLS + 1
                ):
                    time.sleep(0.05)
                publisher.publish_all(traffic[start : start + 4])
                if not kills_done.is_set():
                    time.sleep(0.05)
            done.set()

        try:
            for worker in workers:
                worker.start()
                worker.wait_for_log("mqtt connected")
            feeder = threading.Thread(target=publish, daemon=True)
            feeder.start()
            rng = random.Random(11)
            for kill in range(KILLS):
                victim = workers[kill % 2]
                mark = len(victim.text())
                victim.wait_for_log("batch taken", within_s=30, after=mark)  # it is working
                time.sleep(rng.uniform(0.0, 0.25))
                victim.kill()
                victim.start()
                victim.wait_for_log("mqtt connected", within_s=30, after=mark)
                progress["kills"] = kill + 1
            kills_done.set()
            feeder.join(120)
            assert done.is_set(), "the publisher did not finish"

            def stored() -> int:
                with engine.connect() as conn:
                    return int(conn.execute(select(func.count()).select_from(envelopes)).scalar_one())

            wait_until(lambda: stored() == len(ids), 120, f"all {len(ids)} envelopes stored")
            time.sleep(1.0)
            with engine.connect() as conn:
                assert {r[0] for r in conn.execute(select(envelopes.c.id))} == ids
                counted = conn.execute(select(func.sum(stream_positions.c.envelopes))).scalar_one()
                missing = conn.execute(select(func.sum(stream_positions.c.missing))).scalar_one()
                last = {r.device_id: r.last_seq for r in conn.execute(select(stream_positions))}
            assert int(counted) == len(ids), "a position counted an envelope twice or lost one"
            assert int(missing) == 0 and set(last.values()) == {PER_DEVICE}
            delivered = sum(_total_received(w) for w in workers)
            assert sum(w.starts for w in workers) == 2 + KILLS
            assert delivered > len(traffic), "no kill hit an unacknowledged message"
        finally:
            publisher.close()
            for worker in workers:
                worker.stop()
            engine.dispose()
