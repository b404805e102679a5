"""A full state disk (issue 14): the daemon refuses to start with one error line, and the
outbox stays red until a record is really stored again (not when a claim or ack happens to
fit, nor when a put finds its deduplicated twin). Real filesystems: a full tmpfs, and RLIMIT_FSIZE in a child process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from agent.db import migrate, open_engine
from tests.integration._broker import free_port
from tests.integration.small_disk import SmallDisk, small_disk

__all__ = ["small_disk"]  # the fixture, imported to be used here
ROOT = Path(__file__).resolve().parents[2]


def test_starting_on_a_full_disk_is_one_error_line_not_a_traceback(
    small_disk: SmallDisk, tmp_path: Path
) -> None:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('state_dir = "/var/lib/shopedge"', f'state_dir = "{small_disk.root / "state"}"')
    config = tmp_path / "config.toml"
    config.write_text(text)
    small_disk.fill()
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    errors = [r for r in records if r.get("level") in ("ERROR", "error")]
    assert len(errors) == 1, records
    assert "cannot start" in errors[0]["msg"] and "full" in json.dumps(errors[0]), errors


HEALTH_CHILD = r"""
import asyncio, json, resource, signal, sys
from pathlib import Path
from offline_queue import Outbox, OutboxWriteError

async def main(db):
    health = []
    box = await Outbox.open(Path(db), on_health=lambda c, d: health.append(str(c)))
    for i in range(3):
        await box.put("payment", {"before": i}, dedupe_key=f"k{i}")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    limit = Path(db).stat().st_size + Path(db + "-wal").stat().st_size + 64 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    for i in range(100):
        try:
            await box.put("payment", {"big": "x" * 20000, "i": i})
        except OutboxWriteError:
            break
    marks = {"after_failed_put": health[-1]}
    # Room for a claim's page or two (a full disk often still has that much, or it fits in
    # WAL frames the failed put left behind), but not for another record of this size.
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit + 12 * 1024, resource.RLIM_INFINITY))
    claimed = await box.claim("payment", limit=1)
    await box.release(claimed[0].id, "try later", retry_at=0)
    marks["after_claim_and_release"] = health[-1]
    await box.put("payment", {"before": 1}, dedupe_key="k1")  # its twin is found: nothing new stored
    marks["after_deduplicated_put"] = health[-1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    await box.put("payment", {"after": True})
    marks["after_space_returns"] = health[-1]
    await box.close()
    print(json.dumps(marks))

asyncio.run(main(sys.argv[1]))
"""


def test_outbox_stays_red_until_a_put_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    engine = open_engine(db)
    migrate(engine)
    engine.dispose()
    proc = subprocess.run(
        [sys.executable, "-c", HEALTH_CHILD, str(db)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "after_failed_put": "write_failed",
        "after_claim_and_release": "write_failed",
        "after_deduplicated_put": "write_failed",
        "after_space_returns": "ok",
    }


def _config_on(small_disk: SmallDisk, tmp_path: Path, port: int) -> Path:
    """The example config with its state on the small disk, the POS API on `port`."""
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('state_dir = "/var/lib/shopedge"', f'state_dir = "{small_disk.root / "state"}"')
    text = text.replace('listen = "127.0.0.1:8737"', f'listen = "127.0.0.1:{port}"')
    text = text.replace('listen = "127.0.0.1:8738"', f'listen = "127.0.0.1:{free_port()}"')  # kiosk page
    config = tmp_path / "config.toml"
    config.write_text(text)
    return config


async def _until_pos_answers(http: aiohttp.ClientSession, base: str) -> None:
    """Poll `/status.json` (30 s at most) until the daemon's POS API answers 200."""
    for _ in range(300):
        try:
            async with http.get(f"{base}/status.json") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the POS API never came up")


def _spawn_daemon(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_daemon_on_a_disk_that_fills_answers_503_and_status_goes_red_until_it_writes(
    small_disk: SmallDisk, tmp_path: Path
) -> None:
    port = free_port()
    config = _config_on(small_disk, tmp_path, port)
    token = "disk-full-test-token"
    proc = _spawn_daemon(config, {"SHOPEDGE_POS_TOKEN": token})
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    sale = {"order_id": "FULL1", "amount": 100, "product_name": "tea", "method": "qr"}

    async def component(http: aiohttp.ClientSession, name: str) -> str | None:
        async with http.get(f"{base}/status.json") as response:
            body = await response.json()
        return next((c["level"] for c in body["components"] if c["name"] == name), None)

    try:
        async with aiohttp.ClientSession() as http:
            await _until_pos_answers(http, base)
            small_disk.fill()
            async with http.post(f"{base}/v1/payments", json=sale, headers=auth) as response:
                assert response.status == 503
                assert response.headers["Retry-After"].isdigit()
                assert (await response.json())["error"] == "storage_unavailable"
            await asyncio.sleep(2.0)  # other components keep running (and writing what they can)
            assert await component(http, "journal") == "red"
            async with http.get(f"{base}/status.json") as response:
                assert (await response.json())["overall"] == "red"
            small_disk.free()
            async with http.post(f"{base}/v1/payments", json=sale, headers=auth) as response:
                assert response.status == 201, await response.text()
            assert await component(http, "journal") == "green"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


async def test_stopping_on_a_full_disk_is_one_error_line_not_a_traceback(
    small_disk: SmallDisk, tmp_path: Path
) -> None:
    """SIGTERM while the disk is full: the stop cannot be recorded; exit 1 and one line saying so."""
    port = free_port()
    config = _config_on(small_disk, tmp_path, port)
    proc = _spawn_daemon(config, {"SHOPEDGE_POS_TOKEN": "disk-full-stop-token"})
    filled = False
    try:
        async with aiohttp.ClientSession() as http:
            await _until_pos_answers(http, f"http://127.0.0.1:{port}")
        await asyncio.sleep(2.0)  # the late components (display, sync...) are up by then
        small_disk.fill()
        filled = True
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if filled:
            small_disk.free()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err
    assert "the clean stop could not be recorded" in err
