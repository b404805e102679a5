"""QR matrices: levels, quiet zone, integer scaling, both encoders."""

from __future__ import annotations

import pytest
from PIL import Image

from drivers.display.qr import ENCODER, QUIET_MODULES, DisplayError, Ecc, encode, module_px_for, qr_image
from tests.display_samples import BINDING_URL, PAY_URL

ENCODERS = ["zxing-cpp", "qrcode"]


def test_zxing_cpp_is_the_encoder_here() -> None:
    assert ENCODER == "zxing-cpp"


@pytest.mark.parametrize("encoder", ENCODERS)
def test_versions_stay_low(encoder: str) -> None:
    pay = encode(PAY_URL, Ecc.M, encoder=encoder)
    binding = encode(BINDING_URL, Ecc.Q, encoder=encoder)
    assert pay.version == 7 and pay.size == 45
    assert binding.version <= 6
    assert len(pay.modules) == pay.size**2
    assert set(pay.modules) == {0, 255}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_higher_ecc_needs_more_modules(encoder: str) -> None:
    sizes = [encode(BINDING_URL, ecc, encoder=encoder).size for ecc in Ecc]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_both_encoders_find_the_finder_patterns() -> None:
    for encoder in ENCODERS:
        m = encode(PAY_URL, Ecc.M, encoder=encoder)
        row0 = m.modules[: m.size]
        assert row0[:7] == bytes([0] * 7) and row0[7] == 255  # finder pattern + separator
        assert row0[-7:] == bytes([0] * 7)


@pytest.mark.parametrize("px", [1, 2, 5, 9])
def test_qr_image_is_integer_scaled_with_quiet_zone(px: int) -> None:
    m = encode(PAY_URL, Ecc.M)
    image = qr_image(m, px)
    side = (m.size + 2 * QUIET_MODULES) * px
    assert image.size == (side, side) and image.mode == "L"
    hist = image.histogram()
    assert {i for i, n in enumerate(hist) if n} == {0, 255}  # never resampled: no grey
    quiet = QUIET_MODULES * px
    border = image.crop((0, 0, side, quiet))
    assert border.getextrema() == (255, 255)
    # every module is a solid px*px block equal to the matrix value
    for row in (0, 3, m.size - 1):
        for col in (0, 8, m.size // 2):
            block = image.crop(
                (quiet + col * px, quiet + row * px, quiet + (col + 1) * px, quiet + (row + 1) * px)
            )
            value = m.modules[row * m.size + col]
            assert block.getextrema() == (value, value)


def test_module_px_is_the_largest_that_fits() -> None:
    m = encode(PAY_URL, Ecc.M)  # 45 modules + 8 quiet = 53
    assert module_px_for(m, 53 * 4) == 4
    assert module_px_for(m, 53 * 4 - 1) == 3
    assert module_px_for(m, 52) == 0


def test_tiny_scale_is_refused() -> None:
    with pytest.raises(DisplayError):
        qr_image(encode(PAY_URL, Ecc.M), 0)


def test_too_long_payload_is_a_display_error() -> None:
    with pytest.raises(DisplayError, match="cannot encode"):
        encode("x" * 5000, Ecc.H)


def test_encode_is_cached() -> None:
    assert encode(PAY_URL, Ecc.M) is encode(PAY_URL, Ecc.M)
    assert isinstance(qr_image(encode(PAY_URL, Ecc.M), 3), Image.Image)
