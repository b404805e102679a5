"""Fleet ingest throughput: envelopes/s from Mosquitto into PostgreSQL, 1 and 2 workers,
beside a bare psycopg executemany (ON CONFLICT DO NOTHING) and a COPY loop on the same server
in the same run (COPY both row by row with psycopg's `write_row` and as one block of COPY
text, the worker's own way). Prints JSON. Run by hand:

    .venv/bin/python bench/ingest_bench.py [--envelopes 100000] [--per-message 50]

Method: the workers (real `shopedge cloud ingest` processes) join the group once so the broker
has their sessions, then stop; the devices' messages are published while they are away (the
broker queues them for the group), then the workers start and the clock runs from the first
commit to the last (the envelopes' `received_at`), so neither process start-up nor the
publisher's speed is counted. PostgreSQL runs with fsync on; the broker and the database are
on this machine, like the workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base.envelope import Envelope, encode_message, format_ts
from base.topics import up_topic
from cloud.fleet_db import migrate_fleet, open_fleet_engine
from cloud.ingest._decode import StoredEnvelope
from cloud.ingest._store import copy_text
from tests.cloud._fleet import Publisher, Worker, fleet_broker, write_cloud_toml
from tests.cloud._postgres import fresh_database, postgres_cluster

DEVICES = 50


def make_messages(total: int, per_message: int) -> list[tuple[str, bytes]]:
    messages = []
    per_device = total // DEVICES
    for d in range(DEVICES):
        device = f"c{d:03d}"
        envelopes = [
            Envelope(
                id=str(uuid.uuid4()),
                kind="presence",
                ts=format_ts(1.7e9 + seq),
                seq=seq,
                data={"kind": "enter", "hwid": "0123456789", "rssi": -61, "at": 1.7e9 + seq},
            )
            for seq in range(1, per_device + 1)
        ]
        for start in range(0, len(envelopes), per_message):
            chunk = envelopes[start : start + per_message]
            messages.append((up_topic("store-001", device, "presence"), encode_message(chunk)))
    return messages


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def ingest_run(
    tmp: Path, server: str, messages: list[tuple[str, bytes]], total: int, workers: int
) -> dict[str, float]:
    url = fresh_database(server)
    engine = open_fleet_engine(url)
    migrate_fleet(engine)
    engine.dispose()
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    with fleet_broker(run_dir) as port:
        toml = write_cloud_toml(run_dir, database_url=url, port=port, batch_max=1000, batch_wait_ms=50)
        procs = [Worker(toml, f"w{i}", run_dir) for i in range(workers)]
        for w in procs:
            w.start()
        for w in procs:
            w.wait_for_log("mqtt connected")
        for w in procs:
            w.stop()
        publisher = Publisher(port, client_id="bench-devices")
        for start in range(0, len(messages), 2000):
            publisher.publish_all(messages[start : start + 2000], within_s=300)
        publisher.close()
        for w in procs:
            w.start()
        deadline = time.monotonic() + 900
        with psycopg.connect(_dsn(url)) as conn:
            while True:
                count = conn.execute("SELECT count(*) FROM envelopes").fetchone()[0]  # type: ignore[index]
                if count >= total or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            first, last = conn.execute("SELECT min(received_at), max(received_at) FROM envelopes").fetchone()  # type: ignore[misc]
            first_batch = conn.execute(
                "SELECT count(*) FROM envelopes WHERE received_at = %s", (first,)
            ).fetchone()[0]  # type: ignore[index]
        for w in procs:
            w.stop()
    span = max(last - first, 1e-6)
    return {
        "envelopes": count,
        "seconds": round(span, 3),
        "envelopes_per_s": round((count - first_batch) / span, 1),
    }


def bare_runs(server: str, total: int, batch: int) -> dict[str, float]:
    """The same rows straight into the same table, no broker: executemany and COPY."""
    url = fresh_database(server)
    engine = open_fleet_engine(url)
    migrate_fleet(engine)
    engine.dispose()
    data = json.dumps({"kind": "enter", "hwid": "0123456789", "rssi": -61, "at": 1.7e9})
    rows = [
        (str(uuid.uuid4()), "store-001", f"c{i % DEVICES:03d}", "presence", i, 1.7e9 + i, data, time.time())
        for i in range(total)
    ]
    out: dict[str, float] = {}
    with psycopg.connect(_dsn(url)) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, total, batch):
                cur.executemany(
                    "INSERT INTO envelopes (id, store_id, device_id, stream, seq, ts, data, received_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s) ON CONFLICT (id) DO NOTHING",
                    rows[start : start + batch],
                )
                conn.commit()
        out["executemany_per_s"] = round(total / (time.perf_counter() - started), 1)
        # COPY row by row, then the worker's own way: each batch as one block of COPY text.
        stored = [StoredEnvelope(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
        out["copy_per_s"] = _copy_rate(conn, total, batch, lambda copy, s, e: _write_rows(copy, rows[s:e]))
        out["copy_text_per_s"] = _copy_rate(
            conn, total, batch, lambda copy, s, e: copy.write(copy_text(stored[s:e], time.time()))
        )
    return out


def _write_rows(copy: Any, rows: list[tuple[Any, ...]]) -> None:
    for row in rows:
        copy.write_row(row)


def _copy_rate(conn: Any, total: int, batch: int, write: Callable[[Any, int, int], None]) -> float:
    """Rows/s of `write(copy, start, end)` per batch into an emptied `envelopes`, one commit each."""
    conn.execute("TRUNCATE envelopes")
    conn.commit()
    started = time.perf_counter()
    for start in range(0, total, batch):
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY envelopes (id, store_id, device_id, stream, seq, ts, data, received_at) FROM STDIN"
            ) as copy,
        ):
            write(copy, start, start + batch)
        conn.commit()
    return round(total / (time.perf_counter() - started), 1)


def _ratio(a: float, b: float) -> float | None:
    """a / b; None when b is 0 (a run too small for more than the first batch has no rate)."""
    return round(a / b, 3) if b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envelopes", type=int, default=100_000)
    parser.add_argument(
        "--per-message", type=int, default=50, help="envelopes per MQTT message (device batch)"
    )
    args = parser.parse_args()
    total = (args.envelopes // DEVICES) * DEVICES
    messages = make_messages(total, args.per_message)
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    with postgres_cluster(durable=True) as server:
        bare = bare_runs(server, total, 1000)
        one = ingest_run(tmp, server, messages, total, 1)
        two = ingest_run(tmp, server, messages, total, 2)
    result = {
        "bench": "ingest",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "envelopes": total,
        "per_message": args.per_message,
        "messages": len(messages),
        "bare_executemany_per_s": bare["executemany_per_s"],
        "bare_copy_per_s": bare["copy_per_s"],
        "bare_copy_text_per_s": bare["copy_text_per_s"],
        "one_worker": one,
        "two_workers": two,
        "one_worker_vs_bare_executemany": _ratio(one["envelopes_per_s"], bare["executemany_per_s"]),
        "one_worker_vs_bare_copy": _ratio(one["envelopes_per_s"], bare["copy_per_s"]),
        "one_worker_vs_best_bare": _ratio(one["envelopes_per_s"], max(bare.values())),
        "two_workers_vs_one": _ratio(two["envelopes_per_s"], one["envelopes_per_s"]),
        "goal": ">= 20,000 envelopes/s one worker and >= half the bare rate",
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
