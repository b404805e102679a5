"""Real headless Chromium for the tests that look at a page as a browser shows it (the kiosk
page, the HQ page): one page at a fixed size, driven over the DevTools Protocol."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

__all__ = ["CDP", "CHROMIUM", "chromium_page"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class CDP:
    """The few Chrome DevTools Protocol calls the tests need, over one websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive(timeout=30)).data)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message["result"])

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, within_s: float = 20) -> None:
        async with asyncio.timeout(within_s):
            while not await self.evaluate(expression):  # noqa: ASYNC110 (polling the page)
                await asyncio.sleep(0.1)

    async def screenshot(self) -> Image.Image:
        shot = await self.call("Page.captureScreenshot", format="png")
        return Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")


async def _start(tmp_path: Path, size: tuple[int, int]) -> tuple[asyncio.subprocess.Process, str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    log = (tmp_path / "chromium.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=log,
        stderr=log,
    )
    port_file = profile / "DevToolsActivePort"
    async with asyncio.timeout(60):
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.returncode is not None:
                raise RuntimeError(
                    f"chromium exited {proc.returncode}: {(tmp_path / 'chromium.log').read_text()}"
                )
            await asyncio.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    return proc, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def chromium_page(
    tmp_path: Path, size: tuple[int, int], *, timeout_s: float = 30
) -> AsyncIterator[CDP]:
    """Chromium's one page, `size` CSS pixels at scale 1 (a screenshot is that many pixels);
    the browser is stopped on exit, killed if it does not stop within 10 s."""
    proc, devtools = await _start(tmp_path, size)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            async with http.get(devtools + "/json/list") as resp:
                page = next(t for t in await resp.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 2**20) as ws:
                cdp = CDP(ws)
                await cdp.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=size[0],
                    height=size[1],
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield cdp
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
