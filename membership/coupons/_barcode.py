"""A Code 128 barcode drawn with Flex boxes, so a coupon carries a scannable code without an
image host: pure functions, no I/O.

Owns the Code 128 (subset B) encoding (`code128_modules`) and its rendering as a horizontal
Flex box whose children are black and white bars with `flex` weights equal to their module
widths (LINE lays weighted children out proportionally). The ShopEdge code alphabet (digits and
capitals) is in subset B, so every code is start B + data + check + stop.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QUIET_MODULES", "barcode_box", "code128_modules"]

# Bar/space widths of Code 128 values 0..106 (106 = stop, 7 elements); each sums to 11 (stop 13).
_PATTERNS = (  # noqa: SIM905 (a table reads better as text)
    "212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 221312 231212 "
    "112232 122132 122231 113222 123122 123221 223211 221132 221231 213212 223112 312131 "
    "311222 321122 321221 312212 322112 322211 212123 212321 232121 111323 131123 131321 "
    "112313 132113 132311 211313 231113 231311 112133 112331 132131 113123 113321 133121 "
    "313121 211331 231131 213113 213311 213131 311123 311321 331121 312113 312311 332111 "
    "314111 221411 431111 111224 111422 121124 121421 141122 141221 112214 112412 122114 "
    "122411 142112 142211 241211 221114 413111 241112 134111 111242 121142 121241 114212 "
    "124112 124211 411212 421112 421211 212141 214121 412121 111143 111341 131141 114113 "
    "114311 411113 411311 113141 114131 311141 411131 211412 211214 211232 2331112 "
).split()
_START_B = 104
_STOP = 106
QUIET_MODULES = 10  # the symbology's minimum quiet zone on each side


def code128_modules(text: str) -> list[tuple[bool, int]]:
    """(is_bar, width in modules) runs of `text` in Code 128 B, quiet zones included.

    Raises:
        ValueError: a character outside printable ASCII (subset B).
    """
    values = []
    for ch in text:
        if not 32 <= ord(ch) <= 126:
            raise ValueError(f"Code 128 B cannot encode {ch!r}")
        values.append(ord(ch) - 32)
    check = (_START_B + sum(i * v for i, v in enumerate(values, start=1))) % 103
    runs: list[tuple[bool, int]] = [(False, QUIET_MODULES)]
    for value in (_START_B, *values, check, _STOP):
        for i, width in enumerate(_PATTERNS[value]):
            runs.append((i % 2 == 0, int(width)))
    runs.append((False, QUIET_MODULES))
    return runs


def barcode_box(text: str, *, height: str = "64px") -> dict[str, Any]:
    """A Flex box drawing `text` as a Code 128 barcode (about 80 child boxes, ~7 KB of JSON)."""
    return {
        "type": "box",
        "layout": "horizontal",
        "height": height,
        "paddingAll": "0px",
        "backgroundColor": "#FFFFFF",
        "contents": [
            {
                "type": "box",
                "layout": "vertical",
                "contents": [],
                "flex": width,
                "backgroundColor": "#000000" if bar else "#FFFFFF",
            }
            for bar, width in code128_modules(text)
        ],
    }
