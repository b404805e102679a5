"""Crash test: SIGKILL a process in the middle of outbox writes, again and again.

Every record the child reported durable (its `put()` returned) must be present exactly once
after the kill, and the database must pass `PRAGMA integrity_check`. The database is shared by
all iterations, so each reopen also starts from a file that was killed mid-write.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.db import migrate, open_engine
from offline_queue import Outbox

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("outbox_crash_child.py")
ITERATIONS = int(os.environ.get("SHOPEDGE_CRASH_ITERATIONS", "50"))


def _run_and_kill(db: Path, tag: str, rng: random.Random) -> dict[int, str]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), tag],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == "ready\n", first + proc.stderr.read() if proc.stderr else first
        time.sleep(rng.uniform(0.005, 0.15))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, err
    reported: dict[int, str] = {}
    for line in out.split("\n")[:-1]:  # the last piece may be a line cut by the kill
        rid, seq = line.split(" ")
        reported[int(rid)] = seq
    return reported


def _stored(db: Path) -> tuple[str, list[tuple[int, str]]]:
    conn = sqlite3.connect(db)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = [
            (rid, json.loads(p)["seq"])
            for rid, p in conn.execute("SELECT id, payload FROM outbox WHERE stream = 'crit'")
        ]
    finally:
        conn.close()
    return check, rows


@pytest.mark.slow
async def test_sigkill_never_loses_a_durable_record(tmp_path: Path) -> None:
    db = tmp_path / "shopedge.db"
    engine = open_engine(db)
    migrate(engine)
    engine.dispose()
    rng = random.Random(int(os.environ.get("SHOPEDGE_CRASH_SEED", "0")) or None)
    reported: dict[int, str] = {}
    total_kills_with_work = 0
    for i in range(ITERATIONS):
        got = _run_and_kill(db, f"r{i}", rng)
        total_kills_with_work += bool(got)
        assert not set(got) & set(reported), "an id was handed out twice"
        reported.update(got)
        check, rows = _stored(db)
        assert check == "ok", f"iteration {i}: integrity_check: {check}"
        seqs = [seq for _, seq in rows]
        assert len(seqs) == len(set(seqs)), f"iteration {i}: a record is stored twice"
        assert "duplicate" not in seqs, f"iteration {i}: a dedupe key stored two records"
        stored = dict(rows)
        missing = {rid: seq for rid, seq in reported.items() if stored.get(rid) != seq}
        assert not missing, (
            f"iteration {i}: {len(missing)} durable records lost, e.g. {list(missing.items())[:3]}"
        )
    assert total_kills_with_work >= ITERATIONS // 2, "the child rarely got to write before the kill"
    # The killed file still opens as an outbox, and hands out every record in order.
    claimed: list[int] = []
    async with await Outbox.open(db) as box:
        while batch := await box.claim("crit", limit=5_000):
            claimed += [r.id for r in batch]
            await box.ack(claimed[-len(batch) :])
    assert claimed == sorted(claimed)
    assert set(claimed) >= set(reported)
