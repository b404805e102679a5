"""The framebuffer driver against a file-backed fake /dev/fbN with a fake sysfs directory."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from drivers.display.base import DriverError
from drivers.display.fonts import find_fonts
from drivers.display.framebuffer import FbGeometry, FramebufferDriver, pack, parse_geometry
from drivers.display.layout import render
from tests.display_samples import NOW, qr_screens

UNPACK = {16: "BGR;16", 24: "BGR", 32: "BGRX"}  # Pillow's own unpackers, independent of `pack`


def fake_fb(
    tmp_path: Path, width: int, height: int, bpp: int, stride: int | None = None, fill: int = 0xAB
) -> FramebufferDriver:
    sysfs = tmp_path / "sys" / "fb1"
    sysfs.mkdir(parents=True)
    (sysfs / "virtual_size").write_text(f"{width},{height * 2}\n")  # double-buffered virtual size
    (sysfs / "modes").write_text(f"U:{width}x{height}p-0\n")
    (sysfs / "bits_per_pixel").write_text(f"{bpp}\n")
    pitch = stride or width * bpp // 8
    (sysfs / "stride").write_text(f"{pitch}\n")
    device = tmp_path / "fb1"
    device.write_bytes(bytes([fill]) * pitch * height * 2)
    return FramebufferDriver(device, sysfs)


def read_back(driver: FramebufferDriver) -> Image.Image:
    g = driver.geometry
    data = driver.device.read_bytes()[: g.stride * g.height]
    return Image.frombuffer("RGB", (g.width, g.height), data, "raw", UNPACK[g.bits_per_pixel], g.stride, 1)


@pytest.mark.parametrize("bpp", [16, 24, 32])
@pytest.mark.parametrize("size", [(480, 320), (800, 480), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_frame_lands_in_the_reported_format_and_decodes(
    tmp_path: Path, bpp: int, size: tuple[int, int]
) -> None:
    screen, url = qr_screens()["pay"]
    async with fake_fb(tmp_path, *size, bpp) as driver:
        assert driver.size == size
        frame = render(screen, size=driver.size, lang="zh-TW", fonts=find_fonts(), now=NOW).image
        await driver.present(frame)
    shown = read_back(driver)
    assert zxingcpp.read_barcode(shown).text == url
    if bpp != 16:
        assert shown.tobytes() == frame.tobytes()
    # the second (panned-away) buffer is untouched
    g = driver.geometry
    assert set(driver.device.read_bytes()[g.stride * g.height :]) == {0xAB}


def test_rgb565_bit_layout() -> None:
    geometry = FbGeometry(width=4, height=1, bits_per_pixel=16, stride=8)
    image = Image.new("RGB", (4, 1))
    image.putpixel((0, 0), (255, 0, 0))
    image.putpixel((1, 0), (0, 255, 0))
    image.putpixel((2, 0), (0, 0, 255))
    image.putpixel((3, 0), (0x12, 0x34, 0x56))
    values = struct.unpack("<4H", pack(image, geometry))
    expected_last = ((0x12 >> 3) << 11) | ((0x34 >> 2) << 5) | (0x56 >> 3)
    assert values == (0xF800, 0x07E0, 0x001F, expected_last)


def test_xrgb8888_byte_order() -> None:
    geometry = FbGeometry(width=1, height=1, bits_per_pixel=32, stride=4)
    assert pack(Image.new("RGB", (1, 1), (0x11, 0x22, 0x33)), geometry) == bytes([0x33, 0x22, 0x11, 0x00])


async def test_stride_padding_is_left_alone(tmp_path: Path) -> None:
    async with fake_fb(tmp_path, 480, 320, 16, stride=1024, fill=0x5A) as driver:
        await driver.present(Image.new("RGB", (480, 320), (0, 0, 0)))
    data = driver.device.read_bytes()
    for row in (0, 1, 319):
        assert data[row * 1024 : row * 1024 + 960] == bytes(960)
        assert data[row * 1024 + 960 : (row + 1) * 1024] == b"\x5a" * 64


def test_pack_with_padding_in_memory() -> None:
    geometry = FbGeometry(width=2, height=2, bits_per_pixel=32, stride=12)
    data = pack(Image.new("RGB", (2, 2), (1, 2, 3)), geometry)
    assert len(data) == 24 and data[8:12] == bytes(4)


def test_wrong_frame_size_is_refused() -> None:
    with pytest.raises(DriverError, match="framebuffer is 800x480"):
        pack(Image.new("RGB", (480, 320)), FbGeometry(width=800, height=480, bits_per_pixel=32, stride=3200))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"virtual_size": "800x480", "bits_per_pixel": "16"}, "virtual_size: expected 'WIDTH,HEIGHT'"),
        ({"virtual_size": "800,480", "bits_per_pixel": "8"}, "8 bpp is not supported"),
        ({"virtual_size": "800,480", "bits_per_pixel": "x"}, "bits_per_pixel: expected a number"),
        ({"virtual_size": "800,480", "bits_per_pixel": "16", "stride": "100"}, "impossible geometry"),
        ({"virtual_size": "800,480", "bits_per_pixel": "16", "stride": "?"}, "stride: expected a number"),
    ],
)
def test_bad_sysfs_values(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(DriverError, match=message):
        parse_geometry(**kwargs)


def test_geometry_prefers_the_visible_mode() -> None:
    g = parse_geometry(
        virtual_size="1920,2160\n", bits_per_pixel="32\n", stride="7680\n", modes="U:1920x1080p-0\n"
    )
    assert (g.width, g.height, g.stride) == (1920, 1080, 7680)
    g = parse_geometry(virtual_size="800,480\n", bits_per_pixel="16\n")
    assert (g.width, g.height, g.stride) == (800, 480, 1600)


async def test_missing_framebuffer_says_so(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="does not exist"):
        async with FramebufferDriver(tmp_path / "fb9", tmp_path / "sys" / "fb9"):
            pass


async def test_unopenable_device_names_it(tmp_path: Path) -> None:
    driver = fake_fb(tmp_path, 480, 320, 16)
    driver.device.unlink()
    with pytest.raises(DriverError, match=r"cannot open .*fb1"):
        async with driver:
            pass


def test_for_name_maps_to_dev_and_sysfs() -> None:
    driver = FramebufferDriver.for_name("fb1")
    assert driver.device == Path("/dev/fb1") and driver.sysfs_dir == Path("/sys/class/graphics/fb1")
