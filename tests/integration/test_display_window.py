"""The window driver under SDL's dummy video driver (offscreen): the frame reaches the surface."""

from __future__ import annotations

import pytest
import zxingcpp
from PIL import Image

from drivers.display.base import DriverError
from drivers.display.fonts import find_fonts
from drivers.display.layout import render
from tests.display_samples import NOW, qr_screens

pygame = pytest.importorskip("pygame", reason="pygame not installed: pip install 'shopedge[window]'")


@pytest.fixture(autouse=True)
def offscreen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


async def test_frames_reach_the_window_and_decode() -> None:
    from drivers.display.window import WindowDriver

    screens = qr_screens()
    async with WindowDriver((800, 480), fullscreen=False) as driver:
        for name in ("pay", "paid"):
            screen, url = screens[name]
            frame = render(screen, size=driver.size, lang="zh-TW", fonts=find_fonts(), now=NOW).image
            await driver.present(frame)
            shown = await driver.snapshot()
            assert shown.tobytes() == frame.tobytes()
            assert zxingcpp.read_barcode(shown).text == url
    assert not pygame.display.get_init()


async def test_wrong_size_frame_is_refused() -> None:
    from drivers.display.window import WindowDriver

    async with WindowDriver((480, 320), fullscreen=False) as driver:
        with pytest.raises(DriverError, match="window is"):
            await driver.present(Image.new("RGB", (800, 480)))


async def test_unused_driver_says_so() -> None:
    from drivers.display.window import WindowDriver

    with pytest.raises(DriverError, match="before it was opened"):
        await WindowDriver((480, 320)).present(Image.new("RGB", (480, 320)))
