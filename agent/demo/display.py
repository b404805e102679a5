"""The customer display's demo step: the counter screen is up and its QR scans."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.display.screens import IdleScreen

if TYPE_CHECKING:
    from agent.demo import DemoRun

__all__ = ["step_display_idle"]


async def step_display_idle(run: DemoRun) -> str:
    """The idle screen reached the display and its add-friend QR decodes to the OA link."""
    from agent.demo import DemoStepFailed
    from drivers.display.service import DisplayService

    display = run.ctx.services.get("display")
    if not isinstance(display, DisplayService):
        raise DemoStepFailed("no display service registered in ctx.services['display']")
    screen = display.screen
    if not isinstance(screen, IdleScreen):
        raise DemoStepFailed(f"display should start on the idle screen, shows {screen!r}")
    mirror = run.config.display.png_path
    if mirror is None:
        raise DemoStepFailed("the demo config has no display.png_path to check the screen with")
    deadline = time.monotonic() + 10
    while display.frames_presented < 1 or not mirror.exists():
        if time.monotonic() > deadline:
            health = run.ctx.health.get("display")
            raise DemoStepFailed(
                f"no frame on the display within 10 s ({health.detail if health else 'no health'})"
            )
        await asyncio.sleep(0.05)
    texts = await asyncio.to_thread(_decode, mirror)
    expected = [screen.friend_url] if screen.friend_url else []
    if texts != expected:
        raise DemoStepFailed(f"idle screen QR decodes to {texts}, expected {screen.friend_url}")
    driver = run.config.display
    where = f"http://{driver.listen}/" if driver.driver == "web" else driver.driver
    return f"idle screen on {where} ({driver.size}); its QR scans as {texts[0] if texts else 'none'}"


def _decode(path: Path) -> list[str]:
    import zxingcpp
    from PIL import Image

    with Image.open(path) as image:
        return [result.text for result in zxingcpp.read_barcodes(image)]
