"""Every screen's QR decodes with a real decoder (zxing-cpp) at five sizes, full and 50 %."""

from __future__ import annotations

import pytest
import zxingcpp
from PIL import Image

from drivers.display.fonts import FontSet, find_fonts
from drivers.display.layout import LANGUAGES, Language, render
from drivers.display.qr import Ecc, encode, qr_image
from drivers.display.screens import Screen
from tests.display_samples import BINDING_URL, NOW, PAY_URL, SIZES, all_screens, qr_screens

QR_SCREENS = qr_screens()


@pytest.fixture(scope="module")
def fonts() -> FontSet:
    return find_fonts()


def decode_all(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


@pytest.mark.parametrize("scale", [1.0, 0.5], ids=["full", "half"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(QR_SCREENS))
def test_qr_decodes_to_the_url(fonts: FontSet, name: str, size: tuple[int, int], scale: float) -> None:
    screen, url = QR_SCREENS[name]
    image = render(screen, size=size, lang="zh-TW", fonts=fonts, now=NOW).image
    if scale != 1.0:
        image = image.resize((round(size[0] * scale), round(size[1] * scale)), Image.Resampling.LANCZOS)
    assert decode_all(image) == [url]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("size", [(480, 320), (800, 480)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(QR_SCREENS))
def test_qr_decodes_under_the_offline_banner_at_half_size(
    fonts: FontSet, name: str, size: tuple[int, int], lang: Language
) -> None:
    screen: Screen
    screen, url = QR_SCREENS[name]
    image = render(screen, size=size, lang=lang, fonts=fonts, now=NOW, pending_sync=42).image
    half = image.resize((size[0] // 2, size[1] // 2), Image.Resampling.BILINEAR)
    assert decode_all(half) == [url]


def test_decoder_rejects_a_damaged_code(fonts: FontSet) -> None:
    """The decode tests can fail: wipe the QR's centre and the decoder finds nothing."""
    screen, _ = QR_SCREENS["pay"]
    frame = render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    qr = frame.plan.qr
    assert qr is not None
    image = frame.image.copy()
    third = qr.side // 3
    image.paste((255, 255, 255), (qr.x + third, qr.y + third, qr.x + 2 * third, qr.y + 2 * third))
    assert decode_all(image) == []


@pytest.mark.parametrize("encoder", ["zxing-cpp", "qrcode"])
@pytest.mark.parametrize("ecc", list(Ecc))
@pytest.mark.parametrize(
    "text", [PAY_URL, BINDING_URL, "https://line.me/R/ti/p/@shopedge", "付款 https://x.tw/?q=台北"]
)
def test_both_encoders_decode_to_the_same_text(encoder: str, ecc: Ecc, text: str) -> None:
    matrix = encode(text, ecc, encoder=encoder)
    results = zxingcpp.read_barcodes(qr_image(matrix, 3), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [r.text for r in results] == [text]
    assert results[0].ec_level == ecc.value


@pytest.mark.parametrize("size", [(480, 320), (1920, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", ["idle-plain", "waiting", "paid-no-binding", "failed", "joined"])
def test_screens_without_a_qr_decode_to_nothing(fonts: FontSet, name: str, size: tuple[int, int]) -> None:
    image = render(all_screens()[name], size=size, lang="zh-TW", fonts=fonts, now=NOW, pending_sync=3).image
    assert decode_all(image) == []
