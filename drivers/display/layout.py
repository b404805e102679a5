"""Screen layout: a pure function from a screen state to a Pillow image.

Owns what each screen says, where it goes and how large it is, for any landscape or portrait
size. `plan()` turns (screen, size, language, pending records) into geometry (`Plan`);
`render()` paints it. Nothing here does I/O beyond reading the font once.

Speed (the pay screen redraws every second for its countdown): the static part of a screen
is painted once and cached (`_static_layer`), text is rasterised once per (font, size, text)
and pasted as a mask, QR images are cached per (payload, module size). A countdown tick is a
copy, one rectangle and one cached text paste.

Readability: near-black on white (contrast > 15:1), status words in dark green or dark red
(> 6:1), the amount at about a fifth of the screen height, the QR as large as its region allows.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from PIL import Image, ImageDraw

from drivers.display.fonts import FontSet
from drivers.display.qr import QUIET_MODULES, Ecc, encode, module_px_for, qr_image
from drivers.display.screens import (
    DisplayError,
    FailedScreen,
    IdleScreen,
    JoinedScreen,
    PaidScreen,
    PayScreen,
    Screen,
    WaitingScreen,
    screen_name,
)

__all__ = [
    "LANGUAGES",
    "Frame",
    "Language",
    "Plan",
    "QRItem",
    "TextItem",
    "format_amount",
    "format_countdown",
    "format_token",
    "plan",
    "render",
]

Language = Literal["zh-TW", "en"]
LANGUAGES: Final[tuple[Language, ...]] = ("zh-TW", "en")
RGB = tuple[int, int, int]
# The smallest text, in screen units (1 % of the short side): 12 px at 480x320, 17 px at 800x480.
MIN_TEXT_UNITS: Final = 3.6

WHITE: Final[RGB] = (255, 255, 255)
INK: Final[RGB] = (17, 17, 17)
MUTED: Final[RGB] = (68, 68, 68)
OK_GREEN: Final[RGB] = (0, 112, 60)
FAIL_RED: Final[RGB] = (179, 38, 30)
LINE_GREEN: Final[RGB] = (6, 199, 85)
AMBER: Final[RGB] = (255, 193, 7)
STRIPES: Final[dict[str, RGB]] = {
    "idle": LINE_GREEN,
    "pay": LINE_GREEN,
    "waiting": AMBER,
    "paid": OK_GREEN,
    "joined": OK_GREEN,
    "failed": FAIL_RED,
}


@dataclass(frozen=True, kw_only=True)
class TextItem:
    """One line of text: its top-left corner (line box, not ink), font size and colour."""

    text: str
    x: int
    y: int
    width: int
    height: int
    px: int
    bold: bool
    color: RGB


@dataclass(frozen=True, kw_only=True)
class QRItem:
    """Where a QR goes: top-left of the symbol including its quiet zone, and its scale."""

    text: str
    ecc: Ecc
    x: int
    y: int
    module_px: int
    modules: int  # symbol size without quiet zone

    @property
    def side(self) -> int:
        return (self.modules + 2 * QUIET_MODULES) * self.module_px


@dataclass(frozen=True, kw_only=True)
class Slot:
    """A box redrawn on every tick (the countdown)."""

    x: int
    y: int
    width: int
    height: int
    px: int
    align: Literal["left", "center"]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The geometry of one screen at one size: everything `render` paints."""

    width: int
    height: int
    stripe: tuple[int, int, int, int, RGB]  # x0, y0, x1, y1, colour
    banner: TextItem | None
    banner_box: tuple[int, int, int, int] | None
    texts: tuple[TextItem, ...]
    qr: QRItem | None
    countdown: Slot | None


@dataclass(frozen=True, kw_only=True)
class Frame:
    """A rendered screen: the image and the plan it was painted from.

    Without a countdown the image shares its pixels with the layout's cached static layer, as
    one of Pillow's read-only images: drawing on it copies them first, so the cache stays
    clean, and showing it costs no 1.5 MB copy.
    """

    image: Image.Image
    plan: Plan


@dataclass(frozen=True)
class _Line:
    text: str
    rel: float  # nominal size in screen units (1 unit = 1 % of the short side)
    bold: bool = False
    color: RGB = INK
    gap: float = 0.0  # extra space above, in units


# ---------------------------------------------------------------- text helpers


def format_amount(amount_twd: int) -> str:
    """NT$1,280: Taiwan's usual way of writing a price."""
    return f"NT${amount_twd:,}"


def format_token(token: str) -> str:
    """1234 5678 9012: the 12-digit access token in groups a cashier can type."""
    return " ".join(token[i : i + 4] for i in range(0, len(token), 4))


def format_countdown(seconds_left: float, lang: Language) -> str:
    """ "剩餘 4:59 · Expires in 4:59", or "已逾時 · Expired" once the time is up."""
    left = max(0, int(seconds_left + 0.999))
    if left == 0:
        return _pair("已逾時", "Expired", lang, sep=" · ")
    clock = f"{left // 60}:{left % 60:02d}"
    return _pair(f"剩餘 {clock}", f"Expires in {clock}", lang, sep=" · ")


def _pair(zh: str, en: str, lang: Language, *, sep: str) -> str:
    return f"{zh}{sep}{en}" if lang == "zh-TW" else f"{en}{sep}{zh}"


def _bilingual(
    zh: str, en: str, lang: Language, rel: float, *, bold: bool = False, color: RGB = INK, gap: float = 0.0
) -> list[_Line]:
    """Primary language first at full size, the other below at 62 % (at least 4 units), muted."""
    first, second = (zh, en) if lang == "zh-TW" else (en, zh)
    return [
        _Line(first, rel, bold, color, gap),
        _Line(second, max(4.0, rel * 0.62), False, MUTED if color == INK else color),
    ]


def _size_ladder() -> tuple[int, ...]:
    sizes, px = [], 8
    while px <= 1200:
        sizes.append(px)
        px = max(px + 1, round(px * 1.12))
    return tuple(sizes)


# Text sizes snap to this ladder (steps of at most 12 %): every FreeType face of Noto Sans CJK
# costs ~2.4 MB, so a handful of sizes keeps the font cache small on a 512 MB Pi.
SIZE_LADDER: Final = _size_ladder()
_REF_PX: Final = 100  # widths and line heights are measured once at this size and scaled


def snap_px(px: int) -> int:
    """The largest ladder size <= px (8 at least)."""
    index = bisect.bisect_right(SIZE_LADDER, px) - 1
    return SIZE_LADDER[max(0, index)]


def _lower(px: int) -> int:
    index = bisect.bisect_left(SIZE_LADDER, px)
    return SIZE_LADDER[max(0, index - 1)]


@functools.lru_cache(maxsize=1024)
def _ref_length(fonts: FontSet, text: str, bold: bool) -> float:
    return float(fonts.font(_REF_PX, bold=bold, text=text).getlength(text))


@functools.lru_cache(maxsize=1024)
def _fit_px(fonts: FontSet, text: str, bold: bool, px: int, width: int, *, verify: bool = True) -> int:
    """The largest ladder size <= px at which `text` fits `width` (never below 8 px).

    Estimated from the reference width (text width scales with size), then checked with the
    real font at the chosen size, which is the one that will draw it anyway.
    """
    px = snap_px(px)
    per_px = _ref_length(fonts, text, bold) / _REF_PX
    while px > SIZE_LADDER[0] and per_px * px > width:
        px = _lower(px)
    while verify and px > SIZE_LADDER[0] and _text_width(fonts, text, bold, px) > width:
        px = _lower(px)
    return px


@functools.lru_cache(maxsize=1024)
def _text_width(fonts: FontSet, text: str, bold: bool, px: int) -> int:
    return math.ceil(fonts.font(px, bold=bold, text=text).getlength(text))


@functools.lru_cache(maxsize=2)
def _ref_metrics(fonts: FontSet, bold: bool) -> int:
    ascent, descent = fonts.font(_REF_PX, bold=bold).getmetrics()
    return int(ascent + descent)


def _line_height(fonts: FontSet, px: int, bold: bool) -> int:
    return math.ceil(_ref_metrics(fonts, bold) * px / _REF_PX)


# 64: every screen's fixed labels (touched at each static paint, so they stay) and the last few
# amounts. An amount's mask at the waiting screen's size is ~50 kB, and with 256 entries the
# amounts of a day's sales kept ~8 MB of masks that are rarely drawn twice (bench/footprint.py).
@functools.lru_cache(maxsize=64)
def _text_mask(fonts: FontSet, px: int, bold: bool, text: str) -> tuple[Image.Image, int, int]:
    """The text rasterised once as an "L" mask, with its offset from the line box's top-left."""
    font = fonts.font(px, bold=bold, text=text)
    x0, y0, x1, y1 = font.getbbox(text, anchor="la")
    mask = Image.new("L", (max(1, int(x1 - x0)), max(1, int(y1 - y0))), 0)
    ImageDraw.Draw(mask).text((-x0, -y0), text, fill=255, font=font, anchor="la")
    return mask, int(x0), int(y0)


def _column(
    fonts: FontSet,
    lines: Sequence[_Line],
    box: tuple[int, int, int, int],
    unit: float,
    align: Literal["left", "center"],
) -> list[TextItem]:
    """Stack lines in a box, centred vertically.

    A line wider than the box shrinks to fit; if the stack is too tall, the large lines shrink
    but none goes below `MIN_TEXT_UNITS` (legible from a metre away) unless nothing else fits.
    """
    x, y, w, h = box
    scale, floor = 1.0, round(MIN_TEXT_UNITS * unit)
    for attempt in range(8):
        if attempt == 7:
            floor = 8  # nothing else fits: let the small lines shrink too
        sizes = [
            _fit_px(fonts, line.text, line.bold, max(floor, round(line.rel * unit * scale)), w, verify=False)
            for line in lines
        ]
        heights = [_line_height(fonts, px, line.bold) for px, line in zip(sizes, lines, strict=True)]
        gaps = [round(line.gap * unit * scale) for line in lines]
        total = sum(heights) + sum(gaps)
        if total <= h:
            break
        scale *= h / total * 0.97
    # only now load real fonts: the estimate's sizes, lowered where hinting made a line wider
    sizes = [_fit_px(fonts, line.text, line.bold, px, w) for px, line in zip(sizes, lines, strict=True)]
    heights = [_line_height(fonts, px, line.bold) for px, line in zip(sizes, lines, strict=True)]
    total = sum(heights) + sum(gaps)
    top = y + max(0, (h - total) // 2)
    items = []
    for line, px, height, gap in zip(lines, sizes, heights, gaps, strict=True):
        top += gap
        width = _text_width(fonts, line.text, line.bold, px)
        left = x if align == "left" else x + (w - width) // 2
        items.append(
            TextItem(
                text=line.text,
                x=left,
                y=top,
                width=width,
                height=height,
                px=px,
                bold=line.bold,
                color=line.color,
            )
        )
        top += height
    return items


# ---------------------------------------------------------------- per-screen content


def _content(screen: Screen, lang: Language) -> tuple[list[_Line], str | None, Ecc, bool]:
    """(lines, QR payload, EC level, has countdown) for one screen."""
    match screen:
        case IdleScreen(store_name=name, friend_url=url):
            lines = [
                _Line(name, 11, bold=True),
                *_bilingual("歡迎使用 LINE Pay", "Pay with LINE Pay", lang, 8, gap=3),
            ]
            if url:
                lines += _bilingual("掃描加入好友", "Scan to add us on LINE", lang, 6, gap=4)
            return lines, url, Ecc.M, False
        case PayScreen(amount_twd=amount, qr_url=url, access_token=token):
            lines = [
                _Line(format_amount(amount), 22, bold=True),
                *_bilingual("請用 LINE Pay 掃描", "Scan with LINE Pay", lang, 6.5, gap=1),
            ]
            if token:
                label = _pair("付款碼", "Payment code", lang, sep=" · ")
                lines += [_Line(label, 4.5, color=MUTED, gap=3), _Line(format_token(token), 9, bold=True)]
            return lines, url, Ecc.M, True
        case WaitingScreen(amount_twd=amount):
            lines = [
                _Line(format_amount(amount), 20, bold=True),
                *_bilingual("付款確認中", "Confirming payment", lang, 11, gap=4),
                *_bilingual("請稍候", "Please wait", lang, 6, gap=3),
            ]
            return lines, None, Ecc.M, False
        case PaidScreen(amount_twd=amount, binding_url=url):
            lines = [
                *_bilingual("付款成功", "Paid", lang, 14, bold=True, color=OK_GREEN),
                _Line(format_amount(amount), 9, bold=True, gap=2),
            ]
            if url:
                lines += _bilingual(
                    "掃描加入會員 領取優惠券",
                    "Scan to join and get your welcome coupon",
                    lang,
                    6.5,
                    bold=True,
                    gap=5,
                )
            else:
                lines += _bilingual("謝謝光臨", "Thank you", lang, 7, gap=5)
            # Departure from the display brief's "Q for the binding QR": at Q no signed binding
            # URL fits version 6 (the conversion brief's limit; version 8 for the demo's URL). A
            # screen has no dirt or creases for Q to recover from, while a lower version gives
            # bigger modules at the same QR size, which is what makes a far-away phone scan it.
            return lines, url, Ecc.M, False
        case FailedScreen(reason_zh=zh, reason_en=en):
            lines = [
                *_bilingual("付款失敗", "Payment failed", lang, 13, bold=True, color=FAIL_RED),
                *_bilingual(zh, en, lang, 7, gap=4),
                *_bilingual(
                    "請改用其他付款方式", "Please use another payment method", lang, 7, bold=True, gap=4
                ),
            ]
            return lines, None, Ecc.M, False
        case JoinedScreen(amount_twd=amount):
            lines = [
                *_bilingual("歡迎加入會員", "Welcome, you are a member", lang, 12, bold=True, color=OK_GREEN),
                *_bilingual("優惠券已送到您的 LINE", "Your welcome coupon is in LINE", lang, 7, gap=4),
            ]
            if amount is not None:
                lines += _bilingual(
                    f"本次消費 {format_amount(amount)}", f"Today {format_amount(amount)}", lang, 5.5, gap=4
                )
            return lines, None, Ecc.M, False
    raise DisplayError(f"not a screen state: {screen!r}")


# ---------------------------------------------------------------- planning


def plan(screen: Screen, *, size: tuple[int, int], lang: Language, pending_sync: int, fonts: FontSet) -> Plan:
    """The geometry of `screen` at `size`: text lines, the QR box and the countdown slot.

    Raises:
        DisplayError: the QR payload cannot fit the screen at one pixel per module.
    """
    width, height = size
    unit = min(min(size), max(size) * 0.6) / 100
    margin = max(6, round(unit * 4))
    top = 0
    banner = banner_box = None
    if pending_sync > 0:
        band = round(unit * 10)
        banner_box = (0, 0, width, band)
        text = _pair(
            f"離線中：{pending_sync} 筆待同步",
            f"Offline: {pending_sync} records waiting to sync",
            lang,
            sep="  ·  ",
        )
        (banner,) = _column(
            fonts, [_Line(text, 5.5, bold=True)], (margin, 0, width - 2 * margin, band), unit, "center"
        )
        top = band
    stripe_h = max(4, round(unit * 2))
    stripe = (0, top, width, top + stripe_h, STRIPES[screen_name(screen)])
    top += stripe_h
    lines, payload, ecc, has_countdown = _content(screen, lang)
    if has_countdown:
        lines = [*lines, _Line("\u2007" * 20, 5.5, gap=3)]  # placeholder: the slot's size
    area = (margin, top + margin, width - 2 * margin, height - top - 2 * margin)
    qr = None
    if payload is None:
        items = _column(fonts, lines, area, unit, "center")
    else:
        matrix = encode(payload, ecc)
        landscape = width >= height
        ax, ay, aw, ah = area
        side = min(ah, int(aw * 0.52)) if landscape else min(aw, int(ah * 0.55))
        module_px = module_px_for(matrix, side)
        if module_px < 1:
            raise DisplayError(f"a {matrix.size}-module QR does not fit {width}x{height}")
        qr_side = (matrix.size + 2 * QUIET_MODULES) * module_px
        if landscape:
            qx, qy = ax + aw - qr_side, ay + (ah - qr_side) // 2
            text_box = (ax, ay, aw - qr_side - margin, ah)
        else:
            qx, qy = ax + (aw - qr_side) // 2, ay + ah - qr_side
            text_box = (ax, ay, aw, ah - qr_side - margin)
        qr = QRItem(text=payload, ecc=ecc, x=qx, y=qy, module_px=module_px, modules=matrix.size)
        items = _column(fonts, lines, text_box, unit, "center")
    countdown = None
    if has_countdown:
        slot = items.pop()
        box_w = (width - 2 * margin) if qr is None or width < height else qr.x - 2 * margin
        countdown = Slot(x=margin, y=slot.y, width=box_w, height=slot.height, px=slot.px, align="center")
    return Plan(
        width=width,
        height=height,
        stripe=stripe,
        banner=banner,
        banner_box=banner_box,
        texts=tuple(items),
        qr=qr,
        countdown=countdown,
    )


# ---------------------------------------------------------------- painting


def _paste_text(image: Image.Image, fonts: FontSet, item: TextItem) -> None:
    mask, dx, dy = _text_mask(fonts, item.px, item.bold, item.text)
    image.paste(item.color, (item.x + dx, item.y + dy), mask)


def _paint_static(layout: Plan, fonts: FontSet) -> Image.Image:
    image = Image.new("RGB", (layout.width, layout.height), WHITE)
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1, color = layout.stripe
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=color)
    if layout.banner_box is not None and layout.banner is not None:
        bx0, by0, bx1, by1 = layout.banner_box
        draw.rectangle((bx0, by0, bx1 - 1, by1 - 1), fill=AMBER)
        _paste_text(image, fonts, layout.banner)
    for item in layout.texts:
        _paste_text(image, fonts, item)
    if layout.qr is not None:
        symbol = qr_image(encode(layout.qr.text, layout.qr.ecc), layout.qr.module_px)
        image.paste(symbol, (layout.qr.x, layout.qr.y))
    return image


def _static_key(screen: Screen) -> Screen:
    """The screen without what changes every tick, so the static layer is shared across ticks."""
    return dataclasses.replace(screen, expires_at=1.0) if isinstance(screen, PayScreen) else screen


@functools.lru_cache(maxsize=2)  # the screen showing and the one before: ~1 MB each at 800x480
def _static_layer(
    screen: Screen, size: tuple[int, int], lang: Language, pending_sync: int, fonts: FontSet
) -> tuple[Plan, Image.Image]:
    layout = plan(screen, size=size, lang=lang, pending_sync=pending_sync, fonts=fonts)
    return layout, _paint_static(layout, fonts)


def render(
    screen: Screen,
    *,
    size: tuple[int, int],
    lang: Language,
    fonts: FontSet,
    now: float,
    pending_sync: int = 0,
) -> Frame:
    """Paint `screen` at `size` as an RGB image (`now` is the wall clock, for the countdown).

    Raises:
        DisplayError: the screen cannot be laid out at this size.
    """
    layout, static = _static_layer(_static_key(screen), size, lang, max(0, pending_sync), fonts)
    if layout.countdown is None or not isinstance(screen, PayScreen):
        view = static._new(static.im)  # another Image over the same pixels (Pillow's own helper)
        view.readonly = 1
        return Frame(image=view, plan=layout)
    image = static.copy()
    slot = layout.countdown
    text = format_countdown(screen.expires_at - now, lang)
    px = _fit_px(fonts, text, False, slot.px, slot.width)
    width = _text_width(fonts, text, False, px)
    x = slot.x + (slot.width - width) // 2 if slot.align == "center" else slot.x
    color = FAIL_RED if screen.expires_at - now < 30 else MUTED
    item = TextItem(
        text=text, x=x, y=slot.y, width=width, height=slot.height, px=px, bold=False, color=color
    )
    _paste_text(image, fonts, item)
    return Frame(image=image, plan=layout)
