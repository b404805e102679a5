"""On a real Pi (run with --hw): the framebuffer driver draws on /dev/fb0 and reads back equal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from drivers.display.fonts import find_fonts
from drivers.display.framebuffer import FramebufferDriver
from drivers.display.layout import render
from tests.display_samples import NOW, qr_screens

pytestmark = pytest.mark.hw

UNPACK = {16: "BGR;16", 24: "BGR", 32: "BGRX"}


async def test_pay_screen_on_the_real_framebuffer() -> None:
    name = os.environ.get("SHOPEDGE_TEST_FB", "fb0")
    driver = FramebufferDriver.for_name(name)
    screen, url = qr_screens()["pay"]
    async with driver:
        frame = render(screen, size=driver.size, lang="zh-TW", fonts=find_fonts(), now=NOW).image
        await driver.present(frame)
    assert zxingcpp.read_barcode(read_back(driver)).text == url


def read_back(driver: FramebufferDriver) -> Image.Image:
    g = driver.geometry
    with Path(driver.device).open("rb") as device:
        data = device.read(g.stride * g.height)
    return Image.frombuffer("RGB", driver.size, data, "raw", UNPACK[g.bits_per_pixel], g.stride, 1)
