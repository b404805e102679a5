"""Layout: geometry invariants for every screen at every size, countdown, banner, caching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from drivers.display import layout as lay
from drivers.display.fonts import FontSet, find_fonts
from drivers.display.qr import QUIET_MODULES, Ecc
from drivers.display.screens import PaidScreen, PayScreen, Screen
from tests.display_samples import NOW, PAY_URL, SIZES, all_screens

SCREENS = all_screens()
ALL_SIZES = [*SIZES, (480, 800), (320, 480)]  # portrait too


@pytest.fixture(scope="module")
def fonts() -> FontSet:
    return find_fonts()


def _boxes_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("size", ALL_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(SCREENS))
@pytest.mark.parametrize("lang", lay.LANGUAGES)
@pytest.mark.parametrize("pending", [0, 12])
def test_plan_fits_the_screen_without_overlaps(
    fonts: FontSet, name: str, size: tuple[int, int], lang: lay.Language, pending: int
) -> None:
    plan = lay.plan(SCREENS[name], size=size, lang=lang, pending_sync=pending, fonts=fonts)
    width, height = size
    boxes = [(t.x, t.y, t.x + t.width, t.y + t.height) for t in plan.texts]
    if plan.countdown is not None:
        c = plan.countdown
        boxes.append((c.x, c.y, c.x + c.width, c.y + c.height))
    for box in boxes:
        assert box[0] >= 0 and box[2] <= width and box[1] >= 0 and box[3] <= height, (box, size)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not _boxes_overlap(a, b), (a, b)
    if plan.qr is not None:
        q = plan.qr
        qbox = (q.x, q.y, q.x + q.side, q.y + q.side)
        assert q.x >= 0 and q.x + q.side <= width and q.y + q.side <= height
        assert q.module_px >= 2
        assert all(not _boxes_overlap(qbox, b) for b in boxes)
        if plan.banner_box is not None:
            assert q.y >= plan.banner_box[3]
    assert (plan.banner is not None) == (pending > 0)
    # the smallest text stays legible: at least 3 % of the short side (10 px on a 320-px panel)
    assert min(t.px for t in plan.texts) >= min(width, height) * 0.03


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_qr_is_the_largest_that_fits_its_region(fonts: FontSet, size: tuple[int, int]) -> None:
    plan = lay.plan(SCREENS["pay"], size=size, lang="zh-TW", pending_sync=0, fonts=fonts)
    assert plan.qr is not None
    one_more = (plan.qr.modules + 2 * QUIET_MODULES) * (plan.qr.module_px + 1)
    # one more pixel per module would leave the screen (or the text no room)
    assert (
        plan.qr.y + one_more > size[1] - round(min(size[1], size[0] * 0.6) / 100 * 4)
        or one_more > size[0] * 0.52
    )


def test_ec_levels_per_use(fonts: FontSet) -> None:
    screens = all_screens()
    levels = {
        name: lay.plan(screens[name], size=(800, 480), lang="zh-TW", pending_sync=0, fonts=fonts).qr
        for name in ("pay", "paid", "idle")
    }
    assert levels["pay"] is not None and levels["pay"].ecc is Ecc.M
    assert levels["paid"] is not None and levels["paid"].ecc is Ecc.M  # version <= 6, see layout.py
    assert levels["idle"] is not None and levels["idle"].ecc is Ecc.M


def test_screens_without_a_qr_have_none(fonts: FontSet) -> None:
    for name in ("idle-plain", "waiting", "paid-no-binding", "failed", "joined", "joined-no-amount"):
        assert lay.plan(SCREENS[name], size=(800, 480), lang="en", pending_sync=0, fonts=fonts).qr is None


def test_language_decides_which_line_comes_first(fonts: FontSet) -> None:
    screen = SCREENS["waiting"]
    zh = [t.text for t in lay.plan(screen, size=(800, 480), lang="zh-TW", pending_sync=0, fonts=fonts).texts]
    en = [t.text for t in lay.plan(screen, size=(800, 480), lang="en", pending_sync=0, fonts=fonts).texts]
    assert zh.index("付款確認中") < zh.index("Confirming payment")
    assert en.index("Confirming payment") < en.index("付款確認中")


def test_paid_screen_carries_the_offer(fonts: FontSet) -> None:
    texts = [
        t.text
        for t in lay.plan(SCREENS["paid"], size=(800, 480), lang="zh-TW", pending_sync=0, fonts=fonts).texts
    ]
    assert "付款成功" in texts and "掃描加入會員 領取優惠券" in texts
    assert "Scan to join and get your welcome coupon" in texts and "NT$180" in texts


def test_failed_screen_says_what_to_do(fonts: FontSet) -> None:
    texts = [
        t.text
        for t in lay.plan(SCREENS["failed"], size=(800, 480), lang="zh-TW", pending_sync=0, fonts=fonts).texts
    ]
    assert "請改用其他付款方式" in texts and "Please use another payment method" in texts
    assert "LINE Pay 餘額不足" in texts


def test_pay_screen_shows_amount_and_grouped_token(fonts: FontSet) -> None:
    plan = lay.plan(SCREENS["pay"], size=(800, 480), lang="zh-TW", pending_sync=0, fonts=fonts)
    by_text = {t.text: t for t in plan.texts}
    assert "NT$180" in by_text and "1234 5678 9012" in by_text
    assert by_text["NT$180"].px == max(t.px for t in plan.texts)  # the amount is the largest text
    assert by_text["NT$180"].px >= 480 * 0.15


@pytest.mark.parametrize(
    ("left", "zh", "en"),
    [
        (299.2, "剩餘 5:00 · Expires in 5:00", "Expires in 5:00 · 剩餘 5:00"),
        (61, "剩餘 1:01 · Expires in 1:01", "Expires in 1:01 · 剩餘 1:01"),
        (0.5, "剩餘 0:01 · Expires in 0:01", "Expires in 0:01 · 剩餘 0:01"),
        (0, "已逾時 · Expired", "Expired · 已逾時"),
        (-30, "已逾時 · Expired", "Expired · 已逾時"),
    ],
)
def test_countdown_text(left: float, zh: str, en: str) -> None:
    assert lay.format_countdown(left, "zh-TW") == zh
    assert lay.format_countdown(left, "en") == en


def test_formatters() -> None:
    assert lay.format_amount(1280) == "NT$1,280"
    assert lay.format_amount(180) == "NT$180"
    assert lay.format_token("123456789012") == "1234 5678 9012"


def test_countdown_ticks_change_only_the_countdown(fonts: FontSet) -> None:
    screen = PayScreen(180, PAY_URL, "123456789012", NOW + 120)
    a = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    b = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW + 1)
    assert a.plan is b.plan  # static layer reused
    diff = _diff_box(a.image, b.image)
    assert diff is not None
    c = a.plan.countdown
    assert c is not None
    assert c.y <= diff[1] and diff[3] <= c.y + c.height + 1


def test_render_is_deterministic_and_the_cache_is_not_mutated(fonts: FontSet) -> None:
    screen = PaidScreen(180, "https://line.me/R/oaMessage/@shopedge/?b.x")
    first = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    first.image.paste((255, 0, 0), (0, 0, 800, 480))
    second = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    assert second.image.getpixel((400, 470)) == (255, 255, 255)
    ImageDraw.Draw(second.image).rectangle((0, 0, 799, 479), fill=(0, 0, 255))
    third = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    assert third.image.getpixel((400, 470)) == (255, 255, 255)
    assert second.image.getpixel((400, 470)) == (0, 0, 255)


def test_a_frame_without_a_countdown_shares_the_cached_pixels(fonts: FontSet) -> None:
    """No 1.5 MB copy a frame: the same pixels, until something draws on one of them."""
    screen = PaidScreen(180, "https://line.me/R/oaMessage/@shopedge/?b.y")
    first = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    second = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    assert first.image is not second.image and first.image.im is second.image.im
    pay = lay.render(SCREENS["pay"], size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    again = lay.render(SCREENS["pay"], size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW + 1)
    assert pay.image.im is not again.image.im  # a countdown is drawn on a copy


def test_expiring_countdown_turns_red(fonts: FontSet) -> None:
    screen = PayScreen(180, PAY_URL, None, NOW + 10)
    frame = lay.render(screen, size=(800, 480), lang="zh-TW", fonts=fonts, now=NOW)
    c = frame.plan.countdown
    assert c is not None
    region = frame.image.crop((c.x, c.y, c.x + c.width, c.y + c.height))
    colors = {rgb for _, rgb in region.getcolors(1 << 16) or []}
    assert lay.FAIL_RED in colors


def test_render_size_and_mode(fonts: FontSet) -> None:
    for name, screen in all_screens().items():
        frame = lay.render(screen, size=(480, 320), lang="en", fonts=fonts, now=NOW, pending_sync=1)
        assert frame.image.size == (480, 320) and frame.image.mode == "RGB", name
        assert frame.image.getpixel((240, 2)) == lay.AMBER  # the offline banner


def test_text_is_high_contrast(fonts: FontSet) -> None:
    def luminance(rgb: tuple[int, int, int]) -> float:
        def chan(c: int) -> float:
            v = c / 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        r, g, b = (chan(c) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    white = luminance(lay.WHITE)
    for color in (lay.INK, lay.MUTED, lay.OK_GREEN, lay.FAIL_RED):
        assert (white + 0.05) / (luminance(color) + 0.05) >= 4.5
    assert (luminance(lay.AMBER) + 0.05) / (luminance(lay.INK) + 0.05) >= 7


def _diff_box(a: Image.Image, b: Image.Image) -> tuple[int, int, int, int] | None:
    from PIL import ImageChops

    return ImageChops.difference(a, b).getbbox()


def test_unknown_screen_is_refused(fonts: FontSet) -> None:
    with pytest.raises(lay.DisplayError):
        lay.plan("pay", size=(800, 480), lang="zh-TW", pending_sync=0, fonts=fonts)  # type: ignore[arg-type]


def test_screen_type_alias_covers_samples() -> None:
    screens: list[Screen] = list(all_screens().values())
    assert len(screens) == 10


PURE_MODULES = ["screens", "layout", "qr", "fonts"]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_core_modules_do_no_io(module: str) -> None:
    """Layout is a pure function: no asyncio, HTTP, SQL or hardware imports in the core modules."""
    import ast
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "drivers" / "display" / f"{module}.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "aiohttp", "requests", "sqlalchemy", "socket", "pygame", "subprocess"}


def test_importing_the_package_loads_no_optional_driver_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, drivers.display; print(sorted(m for m in ('pygame', 'aiohttp.web') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


URL_CHARS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~?=&/%", max_size=260
)


@settings(max_examples=60, deadline=None)
@given(
    amount=st.integers(min_value=1, max_value=99_999_999),
    tail=URL_CHARS,
    token=st.none() | st.from_regex(r"\A\d{12}\Z"),
    size=st.sampled_from([*SIZES, (480, 800), (240, 240), (4096, 2160)]),
    lang=st.sampled_from(lay.LANGUAGES),
    pending=st.integers(min_value=0, max_value=10**6),
)
def test_any_valid_pay_screen_lays_out(
    amount: int, tail: str, token: str | None, size: tuple[int, int], lang: lay.Language, pending: int
) -> None:
    fonts = find_fonts()
    screen = PayScreen(amount, "https://p.example/" + tail, token, NOW + 60)
    plan = lay.plan(screen, size=size, lang=lang, pending_sync=pending, fonts=fonts)
    assert plan.qr is not None and plan.qr.module_px >= 1
    width, height = size
    assert plan.qr.x >= 0 and plan.qr.y >= 0
    assert plan.qr.x + plan.qr.side <= width and plan.qr.y + plan.qr.side <= height
    for t in plan.texts:
        assert t.x >= 0 and t.x + t.width <= width, t
    frame = lay.render(screen, size=size, lang=lang, fonts=fonts, now=NOW)
    assert frame.image.size == size


def test_real_binding_url_stays_at_version_6_on_the_paid_screen(fonts: FontSet) -> None:
    """The binding URL the agent issues (signed token, bilingual prompt) as the display draws it."""
    from agent.config import parse_config
    from membership.binding import issue_binding

    config = parse_config(
        {
            "device": {"store_id": "demo-store", "device_id": "counter-1"},
            "line": {"oa_basic_id": "@shopedge"},
            "binding": {"key": "k" * 43},
        },
        environ={},
    )
    _, url = issue_binding(config, "A20261123-0042", NOW)
    plan = lay.plan(
        PaidScreen(amount_twd=180, binding_url=url),
        size=(800, 480),
        lang="zh-TW",
        pending_sync=0,
        fonts=fonts,
    )
    assert plan.qr is not None
    assert plan.qr.text == url
    assert (plan.qr.modules - 17) // 4 <= 6
