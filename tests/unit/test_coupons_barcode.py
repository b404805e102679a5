"""The Flex-drawn Code 128: decoded by zxing-cpp from a faithful raster of the Flex weights."""

from __future__ import annotations

import itertools
import json

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from membership.coupons._barcode import QUIET_MODULES, barcode_box, code128_modules
from membership.coupons._policy import CODE_ALPHABET, make_code

# Every character of the code alphabet, in 10-character codes (as the till sees them).
CODES = [CODE_ALPHABET[i : i + 10] for i in range(0, len(CODE_ALPHABET), 10)] + ["0" * 10]


def raster(box: dict[str, object], module_px: int = 3) -> Image.Image:
    """Lay the Flex box out the way LINE does: each child's width proportional to its flex."""
    children = box["contents"]
    assert isinstance(children, list)
    total = sum(child["flex"] for child in children)
    image = Image.new("L", (total * module_px, 60), 255)
    draw = ImageDraw.Draw(image)
    x = 0
    for child in children:
        width = child["flex"] * module_px
        if child["backgroundColor"] == "#000000":
            draw.rectangle((x, 0, x + width - 1, 59), fill=0)
        x += width
    return image


@pytest.mark.parametrize("code", [*CODES, make_code()])
def test_flex_barcode_scans_back_to_the_code(code: str) -> None:
    (found,) = zxingcpp.read_barcodes(raster(barcode_box(code)))
    assert (found.text, found.format) == (code, zxingcpp.BarcodeFormat.Code128)


def test_layout_invariants() -> None:
    runs = code128_modules("7SGNW90BVA")
    assert runs[0] == (False, QUIET_MODULES) and runs[-1] == (False, QUIET_MODULES)
    assert all(a[0] != b[0] for a, b in itertools.pairwise(runs))  # bars and spaces alternate
    # start 11 + 10 data x 11 + check 11 + stop 13 + quiet zones
    assert sum(w for _, w in runs) == 11 + 110 + 11 + 13 + 2 * QUIET_MODULES
    assert len(json.dumps(barcode_box("7SGNW90BVA"))) < 10_000  # far below LINE's 30 KB per bubble


def test_outside_subset_b_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        code128_modules("咖啡")
