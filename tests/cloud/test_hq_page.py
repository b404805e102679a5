"""The HQ page served by `shopedge cloud serve`, over real sockets, logged into and
screenshotted in real headless Chromium (offline row red, backlogged row amber, chart drawn)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cloud.fleet_db import migrate_fleet, open_fleet_engine
from cloud.ingest import read_message, write_batch_blocking
from tests.chromium import CHROMIUM, chromium_page
from tests.cloud._messages import envelope, message, payment, status

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hq-token-0123456789abcdef"
NOW = time.time()
SIZE = (1280, 1400)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(url: str) -> None:
    engine = open_fleet_engine(url)
    migrate_fleet(engine)
    msgs = [
        status("online", NOW, store="taipei", device="c1"),
        status("offline", NOW - 600, store="taichung", device="c2"),
        status("online", NOW, store="tainan", device="c3"),
        message(
            envelope("payment", 1, payment("T-1", 300, NOW - 100), store="taipei", device="c1"),
            store="taipei",
            device="c1",
        ),
        message(
            envelope("payment", 1, payment("N-1", 90, NOW - 100), store="tainan", device="c3"),
            store="tainan",
            device="c3",
        ),
        message(
            envelope("health", 1, {"outbox_depth": 4000}, store="tainan", device="c3"),
            store="tainan",
            device="c3",
        ),
    ]
    write_batch_blocking(engine, [read_message(t, p) for t, p in msgs], NOW)
    engine.dispose()


@pytest.fixture
async def hq(tmp_path: Path) -> AsyncIterator[str]:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    _seed(url)
    port = _free_port()
    toml = tmp_path / "cloud.toml"
    toml.write_text(
        f'[cloud]\ndatabase_url = "{url}"\n[hq]\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\n',
        encoding="utf-8",
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 (started before the test's loop has work)
        [sys.executable, "-m", "agent", "cloud", "serve", "--config", str(toml)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with http.get(base + "/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        if proc.poll() is not None:
                            pytest.fail((tmp_path / "serve.log").read_text())
                        await asyncio.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


async def test_token_is_required_for_every_page_and_api(hq: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/api/devices", "/api/report", "/chart.png"):
            async with http.get(hq + path) as resp:
                assert resp.status == 401
            async with http.get(hq + path, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}) as resp:
                assert resp.status == 401
        async with http.get(hq + "/") as resp:
            assert resp.status == 401 and 'name="token"' in await resp.text()
        async with http.get(hq + "/api/devices", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            body = await resp.json()
        presence = {d["device_id"]: (d["presence"], d["backlogged"]) for d in body["devices"]}
        assert presence == {"c1": ("online", False), "c2": ("offline", False), "c3": ("online", True)}
        async with http.post(hq + "/login", data={"token": "nope"}, allow_redirects=False) as resp:
            assert resp.status == 401
        async with http.get(
            hq + "/api/report?since=bogus", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            assert resp.status == 400


async def test_chromium_logs_in_and_sees_the_fleet(hq: str, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (deploy/system-deps.sh test installs it)")
    async with chromium_page(tmp_path, SIZE, timeout_s=60) as cdp:
        await cdp.call("Page.navigate", url=hq + "/")
        await cdp.wait_for("document.querySelector('input[name=token]') !== null")
        await cdp.evaluate(
            f"document.querySelector('input[name=token]').value = {json.dumps(TOKEN)};"
            "document.querySelector('form').submit(); true"
        )
        await cdp.wait_for("document.querySelector('#fleet') !== null")
        await cdp.wait_for(
            "document.querySelector('#chart').complete && "
            "document.querySelector('#chart').naturalWidth > 0"
        )
        classes = await cdp.evaluate(
            "Array.from(document.querySelectorAll('#fleet tr[data-device]'))"
            ".map(r => r.dataset.device + ':' + r.className)"
        )
        assert classes == ["taichung/c2:offline", "tainan/c3:backlogged", "taipei/c1:"]
        image = await cdp.screenshot()
        image.save(tmp_path / "hq.png")
    assert image.size == SIZE
    colours = {colour for _count, colour in image.getcolors(maxcolors=SIZE[0] * SIZE[1]) or []}
    assert (248, 201, 196) in colours, "the offline row is highlighted red"
    assert (255, 224, 163) in colours, "the backlogged row is highlighted amber"
    assert (6, 199, 85) in colours, "the funnel chart's payment bars are on the page"
