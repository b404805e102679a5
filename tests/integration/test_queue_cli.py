"""`shopedge queue stats | dead-letters | retry` as a process, on a real outbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.commands import load_or_exit
from agent.db import prepare_state_db
from offline_queue import Durability, Outbox

ROOT = Path(__file__).resolve().parents[2]


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "queue", *args, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _seed(db: Path) -> tuple[int, int]:
    async with await Outbox.open(db, prepare=prepare_state_db, max_attempts=1) as box:
        await box.put("sale", {"n": 1})
        await box.put("sale", {"n": 2})
        await box.put("presence", {"b": 1}, durability=Durability.TELEMETRY)
        doomed = await box.put("coupon_push", {"user": "U1"})
        await box.claim("coupon_push")
        await box.release(doomed, "400 Bad Request: invalid user id\nsecond line", permanent=True)
        other = await box.put("coupon_push", {"user": "U2"})
        await box.claim("coupon_push")
        await box.release(other, "timeout")  # max_attempts=1: gives up
        return doomed, other


async def test_stats_dead_letters_and_retry(config_file: Path) -> None:
    config = load_or_exit(config_file)
    doomed, other = await _seed(config.db_path)

    stats = _cli(config_file, "stats")
    assert stats.returncode == 0, stats.stderr
    lines = stats.stdout.splitlines()
    assert lines[0].split() == ["stream", "depth", "in", "flight", "retrying", "oldest", "dead", "bytes"]
    by_stream = {line.split()[0]: line.split() for line in lines[2:]}
    assert by_stream["sale"][1:4] == ["2", "0", "0"]
    assert by_stream["coupon_push"][1] == "0" and by_stream["coupon_push"][5] == "2"
    assert by_stream["(all)"][1] == "3" and by_stream["(all)"][5] == "2"

    as_json = json.loads(_cli(config_file, "stats", "--json").stdout)
    assert {s["stream"]: (s["depth"], s["dead"]) for s in as_json} == {
        "coupon_push": (0, 2),
        "presence": (1, 0),
        "sale": (2, 0),
    }

    dead = _cli(config_file, "dead-letters")
    assert dead.returncode == 0, dead.stderr
    assert "permanent error: 400 Bad Request: invalid user id second line" in dead.stdout
    assert "gave up after 1 attempts: timeout" in dead.stdout
    letters = json.loads(_cli(config_file, "dead-letters", "--json", "--stream", "coupon_push").stdout)
    assert [(d["id"], d["payload"]) for d in letters] == [(doomed, {"user": "U1"}), (other, {"user": "U2"})]

    retry = _cli(config_file, "retry", str(doomed))
    assert retry.returncode == 0, retry.stderr
    assert f"dead letter {doomed} re-queued" in retry.stdout
    again = _cli(config_file, "retry", str(doomed))
    assert again.returncode == 1 and f"no dead letter with id {doomed}" in again.stderr

    async with await Outbox.open(config.db_path) as box:
        (rec,) = await box.claim("coupon_push")
        assert (rec.id, rec.attempts) == (doomed, 1)


def test_missing_database_is_a_clear_error(config_file: Path) -> None:
    out = _cli(config_file, "stats")
    assert out.returncode == 1
    assert "no state database" in out.stderr and "Traceback" not in out.stderr


def test_empty_outbox(config_file: Path) -> None:
    import asyncio

    config = load_or_exit(config_file)

    async def create() -> None:
        async with await Outbox.open(config.db_path, prepare=prepare_state_db):
            pass

    asyncio.run(create())
    out = _cli(config_file, "stats")
    assert out.returncode == 0 and "outbox is empty" in out.stdout
    assert _cli(config_file, "dead-letters").stdout.strip() == "no dead letters"


async def test_retry_while_the_agent_holds_the_outbox_open(config_file: Path) -> None:
    import asyncio

    config = load_or_exit(config_file)
    async with await Outbox.open(config.db_path, prepare=prepare_state_db) as box:
        rid = await box.put("coupon_push", {"user": "U9"})
        await box.put("coupon_push", {"user": "U10"})
        await box.claim("coupon_push", limit=1)
        await box.release(rid, "400", permanent=True)
        stats = await asyncio.to_thread(_cli, config_file, "stats", "--json")
        assert [(s["depth"], s["dead"]) for s in json.loads(stats.stdout)] == [(1, 1)]
        retry = await asyncio.to_thread(_cli, config_file, "retry", str(rid), "--json")
        assert json.loads(retry.stdout) == {"id": rid, "requeued": True, "stream": "coupon_push"}
        got = await box.claim("coupon_push")
        assert [r.payload["user"] for r in got] == ["U9", "U10"]  # back at its place, first in line
