"""CJK font discovery and the per-size font cache used by the layout.

Owns where the display's font comes from: `display.font_path` if set, else Noto Sans CJK as
packaged by Debian (fonts-noto-cjk) and other distributions. Without a CJK font the screens
would show empty boxes for every Chinese character, so a missing font is a `FontNotFoundError`
that says what to install, never a silent fallback to Pillow's bitmap font.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import ImageFont

from drivers.display.screens import DisplayError

__all__ = ["CANDIDATES", "FontFace", "FontNotFoundError", "FontSet", "find_fonts", "load_font"]

# (regular, bold) pairs, most specific first. The .ttc collections hold JP/KR/SC/TC/HK faces;
# `_tc_index` picks the Traditional Chinese one so 門/骨/角 take Taiwan's glyph shapes.
CANDIDATES: Final[tuple[tuple[str, str], ...]] = (
    (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian / Raspberry Pi OS
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    ),
    (
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
    ),
    (
        "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",  # Fedora
        "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Bold.ttc",
    ),
    (
        "/usr/share/fonts/opentype/noto/NotoSansCJKtc-Regular.otf",  # single-face installs
        "/usr/share/fonts/opentype/noto/NotoSansCJKtc-Bold.otf",
    ),
)
_PROBE: Final = "付款成功"  # four glyphs every screen needs


class FontNotFoundError(DisplayError):
    """No usable CJK font: the screens cannot show Chinese text."""


@dataclass(frozen=True, kw_only=True)
class FontFace:
    """One face inside a font file (a .ttc collection holds several)."""

    path: Path
    index: int = 0


@dataclass(frozen=True, kw_only=True)
class FontSet:
    """The regular and bold faces the layout draws with."""

    regular: FontFace
    bold: FontFace

    def font(self, px: int, *, bold: bool = False) -> ImageFont.FreeTypeFont:
        return load_font(self.bold if bold else self.regular, px)


@functools.lru_cache(maxsize=6)
def load_font(face: FontFace, px: int) -> ImageFont.FreeTypeFont:
    """A FreeType font at a pixel size; cached because opening a face costs milliseconds.

    Each cached face maps the whole font file anew, and the pages it touches count in the
    daemon's resident memory once per face (~3.5 MB for Noto Sans CJK), so the cache is small.
    Text is measured and rasterised once per string (layout caches), so a face is needed only
    for new text: the amounts, the payment code and the countdown, at most six faces (the
    reference size of each weight included); rendering every screen of 200 sales in both
    languages, six faces reopened none, four reopened one per 20-30 sales.
    """
    return ImageFont.truetype(str(face.path), size=px, index=face.index)


def _tc_index(path: Path) -> int:
    """The index of the Traditional Chinese face in a collection (0 for single-face files)."""
    if path.suffix.lower() != ".ttc":
        return 0
    for index in range(16):
        try:
            family, _style = ImageFont.truetype(str(path), size=12, index=index).getname()
        except OSError:
            break
        if family and family.endswith(" TC") and "Mono" not in family:
            return index
    return 0


def _covers_cjk(face: FontFace) -> bool:
    """True when the face has real glyphs for Chinese (not the .notdef box every font has)."""
    font = load_font(face, 24)
    try:
        missing = font.getmask("\U0010fffd").getbbox()
        return all(font.getmask(ch).getbbox() not in (None, missing) for ch in _PROBE)
    except OSError:
        return False


def _face(path: Path) -> FontFace:
    try:
        face = FontFace(path=path, index=_tc_index(path))
        load_font(face, 12)
        return face
    except OSError as exc:
        raise FontNotFoundError(f"display.font_path: {path} is not a readable font ({exc})") from None


def find_fonts(
    font_path: Path | None = None, *, candidates: Iterable[tuple[str, str]] = CANDIDATES
) -> FontSet:
    """The fonts the display renders with.

    Args:
        font_path: `display.font_path`; used for both weights when given.
        candidates: (regular, bold) paths to try in order.

    Raises:
        FontNotFoundError: with the fix (install fonts-noto-cjk, or set display.font_path).
    """
    if font_path is not None:
        if not font_path.is_file():
            raise FontNotFoundError(f"display.font_path: {font_path} does not exist")
        face = _face(font_path)
        if not _covers_cjk(face):
            raise FontNotFoundError(
                f"display.font_path: {font_path} has no Chinese glyphs; use a CJK font such as Noto Sans CJK"
            )
        return FontSet(regular=face, bold=face)
    tried = []
    for regular, bold in candidates:
        tried.append(regular)
        if not Path(regular).is_file():
            continue
        regular_face = _face(Path(regular))
        bold_face = _face(Path(bold)) if Path(bold).is_file() else regular_face
        if _covers_cjk(regular_face):
            return FontSet(regular=regular_face, bold=bold_face)
    raise FontNotFoundError(
        "no CJK font found (looked for " + ", ".join(tried) + "); install it with "
        "`sudo apt-get install fonts-noto-cjk` or set display.font_path to a Noto Sans CJK file"
    )
