"""Font discovery: Noto Sans CJK TC is found; no CJK font is a clear error with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.display.fonts import FontNotFoundError, find_fonts


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
