"""Disk budget and disk full, on real SQLite files.

Budget: telemetry fills it, then new telemetry is refused while critical records are still
accepted (displacing the oldest telemetry, or over budget with an amber health). Disk full:
a child process whose file-size limit (RLIMIT_FSIZE) stops SQLite from growing the WAL gets
`OutboxWriteError` for a critical put, and the health callback goes red.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.db import migrate, open_engine, prepare_state_db
from offline_queue import Durability, Outbox, OutboxCondition, TelemetryRefusedError

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 40_000
PAD = "t" * 400


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_telemetry_fills_budget_and_critical_is_still_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    health: list[tuple[OutboxCondition, str]] = []
    async with await Outbox.open(
        tmp_path / "s.db",
        prepare=prepare_state_db,
        disk_budget_bytes=BUDGET,
        clock=clock,
        on_health=lambda lv, d: health.append((lv, d)),
    ) as box:
        accepted = 0
        refused: TelemetryRefusedError | None = None
        while refused is None and accepted < 1000:
            try:
                await box.put("presence", {"i": accepted, "pad": PAD}, durability=Durability.TELEMETRY)
                accepted += 1
            except TelemetryRefusedError as exc:
                refused = exc
        assert refused is not None and "disk budget" in str(refused)
        assert 50 < accepted < 100  # ~500 bytes each in a 40 kB budget
        assert await box.depth("presence") == accepted
        with pytest.raises(TelemetryRefusedError):
            await box.put("presence", {"late": True, "pad": PAD}, durability=Durability.TELEMETRY)
        refusals = [r for r in caplog.records if "new telemetry refused" in r.getMessage()]
        assert len(refusals) == 1  # logged once per episode, not once per refused put

        # Critical records keep coming: the oldest telemetry makes room for them.
        pay_ids = [await box.put("payment", {"order": i, "pad": PAD}) for i in range(150)]
        assert len(set(pay_ids)) == 150
        assert await box.depth("payment") == 150
        assert await box.depth("presence") == 0  # all telemetry was shed, oldest first...
        # ...and then the budget is exceeded by critical records alone: accepted, health amber.
        assert health[-1][0] is OutboxCondition.OVER_BUDGET and "over disk budget" in health[-1][1]
        got = await box.claim("payment", limit=1000)
        assert [r.payload["order"] for r in got] == list(range(150))
        await box.ack(r.id for r in got)
        assert health[-1] == (OutboxCondition.OK, "ok")


async def test_oldest_telemetry_is_shed_first_for_critical(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "s.db", prepare=prepare_state_db, disk_budget_bytes=BUDGET) as box:
        ids = []
        try:
            while True:
                ids.append(await box.put("presence", {"pad": PAD}, durability=Durability.TELEMETRY))
        except TelemetryRefusedError:
            pass
        await box.put("payment", {"pad": PAD})
        left = [r.id for r in await box.claim("presence", limit=1000)]
        assert left == ids[len(ids) - len(left) :]  # a suffix: the oldest went
        assert 0 < len(left) < len(ids)


async def test_expired_telemetry_is_shed_before_new_telemetry_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    async with await Outbox.open(tmp_path / "s.db", prepare=prepare_state_db, disk_budget_bytes=BUDGET, clock=clock) as box:
        n = 0
        try:
            while True:
                await box.put(
                    "presence", {"pad": PAD}, durability=Durability.TELEMETRY, expires_at=clock.now + 60
                )
                n += 1
        except TelemetryRefusedError:
            pass
        clock.now += 61
        fresh = await box.put("presence", {"fresh": True}, durability=Durability.TELEMETRY)
        assert [r.id for r in await box.claim("presence")] == [fresh]


DISK_FULL_CHILD = r"""
import asyncio, json, resource, signal, sys
from pathlib import Path
from offline_queue import Outbox, OutboxWriteError

async def main(db):
    health = []
    box = await Outbox.open(Path(db), on_health=lambda lv, d: health.append([str(lv), d]))
    ok = [await box.put("payment", {"before": i}) for i in range(3)]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    limit = Path(db).stat().st_size + Path(db + "-wal").stat().st_size + 64 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    error = None
    for i in range(100):
        try:
            await box.put("payment", {"big": "x" * 20000, "i": i})
        except OutboxWriteError as exc:
            error = str(exc)
            break
    depth = await box.depth("payment")
    await box.close()
    print(json.dumps({"ok": ok, "error": error, "health": health, "depth": depth}))

asyncio.run(main(sys.argv[1]))
"""


def test_critical_put_that_cannot_be_written_raises_and_reports_red(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    engine = open_engine(db)
    migrate(engine)
    engine.dispose()
    proc = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CHILD, str(db)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["error"] is not None and "SQLite could not write" in result["error"]
    assert result["health"][0] == ["ok", "ok"]
    assert result["health"][-1][0] == "write_failed" and "cannot write" in result["health"][-1][1]
    # What was durable before the disk filled is still there, and nothing half-written appeared.
    async_check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
            "print(c.execute('PRAGMA integrity_check').fetchone()[0], "
            "c.execute(\"SELECT COUNT(*) FROM outbox WHERE payload LIKE '%before%'\").fetchone()[0])",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert async_check.stdout.split() == ["ok", "3"]
    assert result["depth"] >= 3
