"""The web driver: HTTP and SSE over real sockets, and real headless Chromium following a change."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zxingcpp
from PIL import Image

from drivers.display.base import DriverError
from drivers.display.fonts import find_fonts
from drivers.display.layout import render
from drivers.display.screens import Screen
from drivers.display.web import WebDriver
from tests.chromium import CDP, CHROMIUM, chromium_page
from tests.display_samples import BINDING_URL, NOW, PAY_URL, qr_screens

SIZE = (800, 480)


def frame(screen: Screen) -> Image.Image:
    return render(screen, size=SIZE, lang="zh-TW", fonts=find_fonts(), now=NOW).image


async def read_event(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    block = (await resp.content.readuntil(b"\n\n")).decode()
    kind, data = block.strip().split("\n")
    assert kind == "event: screen" and data.startswith("data: ")
    event: dict[str, Any] = json.loads(data.removeprefix("data: "))
    return event


@pytest.fixture
async def driver() -> AsyncIterator[WebDriver]:
    async with WebDriver("127.0.0.1", 0, SIZE, heartbeat_s=0.2) as d:
        yield d


async def test_no_frame_yet_is_503_then_png(driver: WebDriver) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(driver.url + "screen.png") as resp:
            assert resp.status == 503
        await driver.present(frame(qr_screens()["pay"][0]))
        async with http.get(driver.url + "screen.png") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
            assert resp.headers["X-Screen-Version"] == "1"
            image = Image.open(io.BytesIO(await resp.read()))
            assert image.size == SIZE
            assert zxingcpp.read_barcode(image).text == PAY_URL
        async with http.get(driver.url) as resp:
            page = await resp.text()
            assert "EventSource" in page and "screen.png" in page


async def test_events_announce_each_version_and_keep_alive(driver: WebDriver) -> None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(driver.url + "events") as resp,
    ):
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert await resp.content.readuntil(b"\n\n") == b"retry: 1000\n\n"
        assert await resp.content.readuntil(b"\n\n") == b": keep-alive\n\n"
        await driver.present(frame(qr_screens()["pay"][0]))
        assert await read_event(resp) == {"version": 1, "epoch": driver.epoch}
        await driver.present(frame(qr_screens()["paid"][0]))
        assert await read_event(resp) == {"version": 2, "epoch": driver.epoch}
    async with asyncio.timeout(5):  # noticed at the next keep-alive write
        while driver._clients:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_late_client_gets_the_current_version_first(driver: WebDriver) -> None:
    await driver.present(frame(qr_screens()["pay"][0]))
    await driver.present(frame(qr_screens()["paid"][0]))
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(driver.url + "events") as resp,
    ):
        await resp.content.readuntil(b"\n\n")
        assert await read_event(resp) == {"version": 2, "epoch": driver.epoch}


async def test_closing_the_driver_ends_open_event_streams_promptly() -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        driver = WebDriver("127.0.0.1", 0, SIZE)
        await driver.__aenter__()
        async with http.get(driver.url + "events") as resp:
            await resp.content.readuntil(b"\n\n")
            started = asyncio.get_running_loop().time()
            await driver.__aexit__(None, None, None)
            assert await resp.content.read() == b""  # end of stream, not a hang
            assert asyncio.get_running_loop().time() - started < 3


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(DriverError, match=rf"display.listen: cannot listen on 127.0.0.1:{port}"):
            async with WebDriver("127.0.0.1", port, SIZE):
                pass


# ---------------------------------------------------------------- real Chromium over CDP


async def _wait_version(cdp: CDP, version: int) -> None:
    """Until the kiosk page says it shows frame `version`."""
    await cdp.wait_for(f"document.body.dataset.version === {json.dumps(str(version))}")


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (deploy/system-deps.sh test installs it)"
)
async def test_headless_chromium_follows_a_screen_change_and_its_qr_decodes(
    driver: WebDriver, tmp_path: Path
) -> None:
    screens = qr_screens()
    await driver.present(frame(screens["pay"][0]))
    async with chromium_page(tmp_path, SIZE) as cdp:
        await cdp.call("Page.navigate", url=driver.url)
        await _wait_version(cdp, 1)
        first = await cdp.screenshot()
        assert first.size == SIZE
        assert [r.text for r in zxingcpp.read_barcodes(first)] == [PAY_URL]

        await driver.present(frame(screens["paid"][0]))  # no reload: SSE tells the page
        await _wait_version(cdp, 2)
        second = await cdp.screenshot()
        assert [r.text for r in zxingcpp.read_barcodes(second)] == [BINDING_URL]
        # shown 1:1: the screenshot is the rendered frame, pixel for pixel
        assert second.tobytes() == frame(screens["paid"][0]).tobytes()


ROOT = Path(__file__).resolve().parents[2]


async def test_kiosk_script_waits_for_the_page_then_opens_the_browser(
    driver: WebDriver, tmp_path: Path
) -> None:
    fake = tmp_path / "browser"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "deploy" / "kiosk.sh"),
        driver.url,
        env={"PATH": "/usr/bin:/bin", "SHOPEDGE_KIOSK_BROWSER": str(fake), "SHOPEDGE_KIOSK_WAIT_S": "5"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    args = out.decode().split()
    assert "--kiosk" in args and args[-1] == driver.url


async def test_kiosk_script_gives_up_when_nothing_serves(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "deploy" / "kiosk.sh"),
        f"http://127.0.0.1:{port}/",
        env={"PATH": "/usr/bin:/bin", "SHOPEDGE_KIOSK_BROWSER": "/bin/true", "SHOPEDGE_KIOSK_WAIT_S": "1"},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and b"nothing serves" in err


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (deploy/system-deps.sh test installs it)"
)
async def test_the_kiosk_page_follows_a_restarted_agent(tmp_path: Path) -> None:
    """After an agent restart versions count from 1 again; the open page must still follow."""
    screens = qr_screens()
    first = WebDriver("127.0.0.1", 0, SIZE)
    await first.__aenter__()
    port = first.port
    await first.present(frame(screens["pay"][0]))
    await first.present(frame(screens["paid"][0]))
    try:
        async with chromium_page(tmp_path, SIZE) as cdp:
            await cdp.call("Page.navigate", url=first.url)
            await _wait_version(cdp, 2)
            await first.__aexit__(None, None, None)
            async with WebDriver("127.0.0.1", port, SIZE) as second:
                idle, friend = screens["idle"]
                await second.present(frame(idle))
                await _wait_version(cdp, 1)
                shot = await cdp.screenshot()
                assert [r.text for r in zxingcpp.read_barcodes(shot)] == [friend]
    finally:
        await first.__aexit__(None, None, None)


def _count_encodings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import drivers.display.web as web_module

    encoded: list[int] = []
    real_encode = web_module.encode_png

    def counting(image: Image.Image) -> bytes:
        encoded.append(1)
        return real_encode(image)

    monkeypatch.setattr(web_module, "encode_png", counting)
    return encoded


async def test_a_frame_is_encoded_only_when_fetched_and_once(
    driver: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = _count_encodings(monkeypatch)
    screens = [qr_screens()[name][0] for name in ("idle", "pay", "paid")]
    for screen in screens:
        await driver.present(frame(screen))
    assert encoded == []  # nobody asked: nothing encoded
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        bodies = await asyncio.gather(*(_fetch(http, driver.url + "screen.png") for _ in range(3)))
        assert len(encoded) == 1 and len(set(bodies)) == 1  # three clients, one encoding
        image = Image.open(io.BytesIO(bodies[0]))
        assert image.convert("RGB").tobytes() == frame(screens[-1]).tobytes()  # the newest frame


async def _fetch(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as resp:
        assert resp.status == 200 and resp.headers["X-Screen-Version"] == "3"
        return await resp.read()


@pytest.mark.parametrize("name", ["idle", "pay", "paid"])
def test_encoded_png_is_the_frame_exactly_and_small(name: str) -> None:
    from drivers.display.web import encode_png

    image = frame(qr_screens()[name][0])
    png = encode_png(image)
    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == SIZE
    assert decoded.tobytes() == image.tobytes()
    assert len(png) < 120_000  # flat screens: tens of kB, not the 1.1 MB of raw pixels
    assert zxingcpp.read_barcode(decoded).text == qr_screens()[name][1]
    grey = encode_png(image.convert("L"))
    assert Image.open(io.BytesIO(grey)).convert("L").tobytes() == image.convert("L").tobytes()


async def test_a_followed_frame_is_encoded_before_the_kiosk_asks(
    driver: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = _count_encodings(monkeypatch)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(driver.url + "events") as resp,
    ):
        await resp.content.readuntil(b"\n\n")
        await driver.present(frame(qr_screens()["paid"][0]))
        assert await read_event(resp) == {"version": 1, "epoch": driver.epoch}
        async with asyncio.timeout(5):
            while not encoded:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        body = await _fetch_version(http, driver.url + "screen.png", "1")
        assert encoded == [1]  # started by the frame, used by the request: once
        assert Image.open(io.BytesIO(body)).convert("RGB").tobytes() == frame(qr_screens()["paid"][0]).tobytes()


async def _fetch_version(http: aiohttp.ClientSession, url: str, version: str) -> bytes:
    async with http.get(url) as resp:
        assert resp.status == 200 and resp.headers["X-Screen-Version"] == version
        return await resp.read()


async def test_the_support_copy_shares_the_kiosks_encoding_of_a_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a kiosk following, a frame the support copy is due with is encoded once, for both."""
    import drivers.display.png as png_module
    import drivers.display.web as web_module
    from agent.config import DisplayConfig
    from agent.wiring.health import DriverHealth
    from base.health import HealthBoard
    from drivers.display.screens import IdleScreen
    from drivers.display.service import DisplayService

    encoded = _count_encodings(monkeypatch)  # the kiosk's encodings ...
    monkeypatch.setattr(png_module, "encode_png", web_module.encode_png)  # ... and the copy's own
    web = WebDriver("127.0.0.1", 0, SIZE, heartbeat_s=0.2)
    service = DisplayService(
        config=DisplayConfig(size="800x480"),
        health=DriverHealth(HealthBoard()),
        initial=IdleScreen("Store"),
        driver_factory=lambda: web,
        mirror_path=tmp_path / "screen.png",
    )
    task = asyncio.create_task(service.run())
    try:
        async with asyncio.timeout(10):
            while web._runner is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(web.url + "events") as resp,
        ):
            await resp.content.readuntil(b"\n\n")
            async with asyncio.timeout(10):
                while not (tmp_path / "screen.png").exists():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            body = await _fetch_version(http, web.url + "screen.png", str(web.version))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert web.version == 1 and encoded == [1]  # the first frame: the copy and the kiosk's, one encoding
    assert (tmp_path / "screen.png").read_bytes() == body
