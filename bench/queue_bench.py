"""Outbox benchmark: ShopEdge's `offline_queue.Outbox` against persist-queue's `SQLiteAckQueue`.

Run by hand (`python bench/queue_bench.py`); prints one JSON object. Both queues use WAL with
`synchronous=FULL` on a file in the same directory (default: a temp dir under the current
working directory, so on the same disk as the repo, never tmpfs). persist-queue sets only
`journal_mode=WAL` itself; we set `PRAGMA synchronous=FULL` on both of its connections right
after opening and read it back (`peer_synchronous` in the output) to prove it took.

Measured, each on a fresh database:
- puts_per_s: durable (critical) puts from `--producers` concurrent producers (asyncio tasks for
  the Outbox, threads for the peer, which is a synchronous library);
- claim_ack_per_s: claim `--batch` records then ack them, repeated over `--n-claim` records
  (the peer has no batch API: `get()` + `ack()` per record, each its own commit);
- drain_100k_s: time to claim+ack `--n-drain` records (bulk-loaded untimed first; the peer's
  fill runs with synchronous=OFF to save time, then the queue is reopened with FULL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.db import prepare_state_db
from offline_queue import Outbox

PAYLOAD: dict[str, Any] = {
    "order_id": "ORD-20260101-000123",
    "amount_twd": 180,
    "op": "confirm",
    "pad": "x" * 64,
}


def _fsync_ms(directory: Path) -> float:
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        started = time.perf_counter()
        for _ in range(100):
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        return (time.perf_counter() - started) * 10.0
    finally:
        os.close(fd)
        path.unlink()


# --- ShopEdge outbox ---------------------------------------------------------------------------


async def _ours_puts(db: Path, n: int, producers: int) -> float:
    async with await Outbox.open(db, prepare=prepare_state_db, disk_budget_bytes=2**40) as box:
        per = n // producers

        async def producer() -> None:
            for _ in range(per):
                await box.put("sale", PAYLOAD)

        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(producers)))
        elapsed = time.perf_counter() - started
        assert await box.depth("sale") == per * producers
        return per * producers / elapsed


async def _ours_fill(box: Outbox, n: int) -> None:
    for start in range(0, n, 1000):
        await asyncio.gather(*(box.put("sale", PAYLOAD) for _ in range(min(1000, n - start))))


async def _ours_drain(db: Path, n: int, batch: int) -> float:
    async with await Outbox.open(db, prepare=prepare_state_db, disk_budget_bytes=2**40) as box:
        await _ours_fill(box, n)
        started = time.perf_counter()
        done = 0
        while True:
            records = await box.claim("sale", limit=batch)
            if not records:
                break
            await box.ack(r.id for r in records)
            done += len(records)
        elapsed = time.perf_counter() - started
        assert done == n, (done, n)
        assert await box.depth() == 0
        return elapsed


# --- persist-queue SQLiteAckQueue --------------------------------------------------------------


def _peer_open(directory: Path, synchronous: str = "FULL") -> Any:
    from persistqueue import SQLiteAckQueue

    queue = SQLiteAckQueue(str(directory), multithreading=True, auto_resume=False)
    for conn in {id(queue._putter): queue._putter, id(queue._getter): queue._getter}.values():
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return queue


def _peer_sync_level(queue: Any) -> list[int]:
    return [int(conn.execute("PRAGMA synchronous").fetchone()[0]) for conn in (queue._putter, queue._getter)]


def _peer_puts(directory: Path, n: int, producers: int) -> tuple[float, list[int]]:
    queue = _peer_open(directory)
    levels = _peer_sync_level(queue)
    per = n // producers
    gate = threading.Barrier(producers + 1)

    def producer() -> None:
        gate.wait()
        for _ in range(per):
            queue.put(PAYLOAD)

    with ThreadPoolExecutor(producers) as pool:
        futures = [pool.submit(producer) for _ in range(producers)]
        gate.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    assert queue.qsize() == per * producers
    queue.close()
    return per * producers / elapsed, levels


def _peer_fill(directory: Path, n: int) -> None:
    """Untimed setup; the ack queue forces a commit per put, so fill with synchronous=OFF."""
    queue = _peer_open(directory, synchronous="OFF")
    for _ in range(n):
        queue.put(PAYLOAD)
    queue.close()


def _peer_drain(directory: Path, n: int) -> float:
    from persistqueue.exceptions import Empty

    _peer_fill(directory, n)
    queue = _peer_open(directory)
    started = time.perf_counter()
    done = 0
    while True:
        try:
            item = queue.get(block=False, raw=True)
        except Empty:
            break
        queue.ack(id=item["pqid"])
        done += 1
    elapsed = time.perf_counter() - started
    assert done == n, (done, n)
    queue.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=100)
    parser.add_argument("--n-put", type=int, default=20_000, help="puts timed for ShopEdge")
    parser.add_argument("--n-peer-put", type=int, default=5_000, help="puts timed for the peer")
    parser.add_argument("--n-claim", type=int, default=20_000)
    parser.add_argument("--n-peer-claim", type=int, default=5_000)
    parser.add_argument("--n-drain", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the temp databases go")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="queue-bench-", dir=args.dir))
    try:
        out: dict[str, Any] = {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "fsync_ms": round(_fsync_ms(root), 3),
            "producers": args.producers,
            "batch": args.batch,
        }
        out["puts_per_s"] = round(asyncio.run(_ours_puts(root / "ours-put.db", args.n_put, args.producers)))
        claim_s = asyncio.run(_ours_drain(root / "ours-claim.db", args.n_claim, args.batch))
        out["claim_ack_per_s"] = round(args.n_claim / claim_s)
        drain_s = asyncio.run(_ours_drain(root / "ours-drain.db", args.n_drain, args.batch))
        out["drain_100k_s"] = round(drain_s, 2)

        peer_puts, levels = _peer_puts(root / "peer-put", args.n_peer_put, args.producers)
        out["peer_synchronous"] = levels  # 2 == FULL on the put and get connections
        out["peer_puts_per_s"] = round(peer_puts)
        peer_claim_s = _peer_drain(root / "peer-claim", args.n_peer_claim)
        out["peer_claim_ack_per_s"] = round(args.n_peer_claim / peer_claim_s)
        out["peer_drain_100k_s"] = round(_peer_drain(root / "peer-drain", args.n_drain), 2)
        out["puts_vs_peer"] = round(out["puts_per_s"] / out["peer_puts_per_s"], 1)
        out["claim_ack_vs_peer"] = round(out["claim_ack_per_s"] / out["peer_claim_ack_per_s"], 1)
        out["drain_vs_peer"] = round(out["peer_drain_100k_s"] / out["drain_100k_s"], 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
