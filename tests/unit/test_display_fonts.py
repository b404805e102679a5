"""Font discovery: Noto Sans CJK TC is found; no CJK font is a clear error with the fix."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from drivers.display.fonts import SCREEN_FONT_DIR, FontNotFoundError, find_fonts, load_font, screen_font
from drivers.display.layout import Language, render
from tests.display_samples import NOW, all_screens

ROOT = Path(__file__).resolve().parents[2]
SCREENS = all_screens()


def test_finds_the_traditional_chinese_face() -> None:
    fonts = find_fonts()
    family, _ = fonts.font(20).getname()
    bold_family, bold_style = fonts.font(20, bold=True).getname()
    assert family == "Noto Sans CJK TC" and bold_family == "Noto Sans CJK TC" and bold_style == "Bold"


def test_no_candidates_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(FontNotFoundError, match="apt-get install fonts-noto-cjk") as info:
        find_fonts(candidates=[(str(tmp_path / "a.ttc"), str(tmp_path / "b.ttc"))])
    assert str(tmp_path / "a.ttc") in str(info.value)
    assert "display.font_path" in str(info.value)


def test_a_latin_only_font_is_refused() -> None:
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not dejavu.exists():
        pytest.skip("DejaVu not installed: no Latin-only font to test with")
    with pytest.raises(FontNotFoundError, match="no Chinese glyphs"):
        find_fonts(dejavu)


def test_explicit_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FontNotFoundError, match=r"display.font_path: .* does not exist"):
        find_fonts(tmp_path / "x.ttc")


def test_not_a_font(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    with pytest.raises(FontNotFoundError, match="not a readable font"):
        find_fonts(junk)


def test_explicit_cjk_font_is_used_for_both_weights() -> None:
    path = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
    fonts = find_fonts(path)
    assert fonts.regular == fonts.bold and fonts.regular.path == path and fonts.regular.index == 3


# ---------------------------------------------------------------- the screen font


def _screen_font_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("screen_font", ROOT / "deploy" / "screen_font.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_screen_font_is_used_beside_noto_sans_cjk_tc() -> None:
    fonts = find_fonts()
    assert fonts.screen is not None and fonts.screen.regular.in_memory
    assert fonts.font(40, text="付款成功").getname() == ("Noto Sans CJK TC", "Regular")
    assert fonts.font(40, text="付款成功").path is not fonts.regular.path  # the subset's shared bytes


def test_the_screen_font_covers_every_text_the_screens_are_given_in_the_code() -> None:
    """A new screen text with a character the screen font lacks would be drawn by the full font
    (correct, but ~3 MB of resident memory a face): rebuild with deploy/screen_font.py."""
    tool = _screen_font_tool()
    texts = tool.screen_texts()
    assert any("付款成功" in t for t in texts) and any("LINE Pay" in t for t in texts)  # both sources read
    fonts = find_fonts()
    assert fonts.screen is not None
    missing = sorted({ch for text in texts for ch in text if not fonts.screen.covers(ch)})
    assert not missing, f"run `python deploy/screen_font.py`: the screen font lacks {''.join(missing)}"
    assert fonts.screen.chars <= frozenset(tool.characters())


def test_every_character_the_screen_font_claims_has_its_own_glyph() -> None:
    fonts = find_fonts()
    assert fonts.screen is not None
    font = load_font(fonts.screen.bold, 24)
    notdef = bytes(font.getmask("\U0010fffd"))
    drawn = [ch for ch in fonts.screen.chars if ch.strip() and ch.isprintable()]
    assert len(drawn) > 400
    assert [ch for ch in drawn if bytes(font.getmask(ch)) == notdef] == []


@pytest.mark.parametrize("name", sorted(SCREENS))
@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_every_screen_is_pixel_identical_with_and_without_the_screen_font(name: str, lang: Language) -> None:
    with_screen = find_fonts()
    assert with_screen.screen is not None
    full_only = dataclasses.replace(with_screen, screen=None)
    for pending in (0, 3):
        a = render(
            SCREENS[name], size=(800, 480), lang=lang, fonts=with_screen, now=NOW, pending_sync=pending
        )
        b = render(SCREENS[name], size=(800, 480), lang=lang, fonts=full_only, now=NOW, pending_sync=pending)
        assert a.plan == b.plan, f"{name} {lang} pending={pending}"
        assert a.image.tobytes() == b.image.tobytes(), f"{name} {lang} pending={pending}"


def test_a_store_name_the_screen_font_lacks_is_drawn_by_the_full_font() -> None:
    fonts = find_fonts()
    assert fonts.screen is not None and not fonts.screen.covers("示範門市")
    assert fonts.font(30, text="示範門市").path == str(fonts.regular.path)
    assert fonts.font(30, text="示範門市") is not fonts.font(30, text="示範門市")  # not kept open
    assert fonts.screen.covers("ShopEdge") and not isinstance(fonts.font(30, text="ShopEdge").path, str)


def test_a_screen_font_that_draws_differently_is_not_used(tmp_path: Path) -> None:
    """Another Noto release than the one it was cut from: the full font alone, same pixels."""
    for name in ("NotoSansCJKtc-Regular.subset.otf", "NotoSansCJKtc-Bold.subset.otf"):
        shutil.copyfile(SCREEN_FONT_DIR / "NotoSansCJKtc-Bold.subset.otf", tmp_path / name)  # bold for both
    shutil.copyfile(SCREEN_FONT_DIR / "chars.txt", tmp_path / "chars.txt")
    full = dataclasses.replace(find_fonts(), screen=None)
    assert screen_font(full, tmp_path) is None
    assert screen_font(full, tmp_path / "absent") is None
    assert screen_font(full) is not None
