"""CJK font discovery and the per-size font cache used by the layout.

Owns where the display's font comes from: `display.font_path` if set, else Noto Sans CJK as
packaged by Debian (fonts-noto-cjk) and other distributions. Beside Noto Sans CJK TC, the
screen font (`screen_font/`, built by deploy/screen_font.py) draws every string whose
characters it has: the same font cut to the screens' texts, ~130 kB a weight read once and
shared by every size, where each face of the full collection maps its 20 MB file anew and keeps
~2-4 MB of it resident. Without a CJK font the screens
would show empty boxes for every Chinese character, so a missing font is a `FontNotFoundError`
that says what to install, never a silent fallback to Pillow's bitmap font.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import ImageFont

from drivers.display.screens import DisplayError

__all__ = [
    "CANDIDATES",
    "SCREEN_FONT_DIR",
    "FontFace",
    "FontNotFoundError",
    "FontSet",
    "ScreenFont",
    "find_fonts",
    "load_font",
    "open_font",
    "screen_font",
]

log = logging.getLogger(__name__)

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
SCREEN_FONT_DIR: Final = Path(__file__).with_name("screen_font")
_SCREEN_FAMILY: Final = "Noto Sans CJK TC"  # the face the screen font was cut from
_SAME_PIXELS: Final = ("付款成功 Paid NT$ 1,234", 24), ("請稍候 Please wait", 100)


class FontNotFoundError(DisplayError):
    """No usable CJK font: the screens cannot show Chinese text."""


@dataclass(frozen=True, kw_only=True)
class FontFace:
    """One face inside a font file (a .ttc collection holds several)."""

    path: Path
    index: int = 0
    in_memory: bool = False  # read once and shared by every size (the small screen font)


@dataclass(frozen=True, kw_only=True)
class ScreenFont:
    """The full font's faces cut to the characters the screens show (`chars`)."""

    regular: FontFace
    bold: FontFace
    chars: frozenset[str]

    def covers(self, text: str) -> bool:
        return self.chars.issuperset(text)


@dataclass(frozen=True, kw_only=True)
class FontSet:
    """The regular and bold faces the layout draws with, and the screen font beside them."""

    regular: FontFace
    bold: FontFace
    screen: ScreenFont | None = None

    def font(self, px: int, *, bold: bool = False, text: str | None = None) -> ImageFont.FreeTypeFont:
        """The face for `text` (for metrics alone when None: the same in both fonts)."""
        full = self.bold if bold else self.regular
        if self.screen is None:
            return load_font(full, px)
        if text is None or self.screen.covers(text):
            return load_font(self.screen.bold if bold else self.screen.regular, px)
        # Rare (a store name: its masks and widths are cached by the layout), so not kept open:
        # a kept face would keep its ~3 MB of the file resident for one line of text.
        return open_font(full, px)


class _SharedBytes:
    """A font file's bytes handed to Pillow, which keeps them for FreeType without copying."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


@functools.lru_cache(maxsize=4)
def _font_bytes(path: Path) -> bytes:
    return path.read_bytes()


def open_font(face: FontFace, px: int) -> ImageFont.FreeTypeFont:
    """A FreeType font at a pixel size, not cached: its file is unmapped when it is dropped."""
    if face.in_memory:
        # FreeType's structures over the shared bytes: a few kB a face.
        return ImageFont.truetype(_SharedBytes(_font_bytes(face.path)), size=px, index=face.index)  # type: ignore[arg-type]  # Pillow reads any object with read()
    return ImageFont.truetype(str(face.path), size=px, index=face.index)


def load_font(face: FontFace, px: int) -> ImageFont.FreeTypeFont:
    """A FreeType font at a pixel size (cached: opening a face costs milliseconds)."""
    return _memory_font(face, px) if face.in_memory else _file_font(face, px)


@functools.lru_cache(maxsize=24)
def _memory_font(face: FontFace, px: int) -> ImageFont.FreeTypeFont:
    return open_font(face, px)


@functools.lru_cache(maxsize=6)
def _file_font(face: FontFace, px: int) -> ImageFont.FreeTypeFont:
    """A FreeType font at a pixel size; cached because opening a face costs milliseconds.

    Each cached face maps the whole font file anew, and the pages it touches count in the
    daemon's resident memory once per face (~3.5 MB for Noto Sans CJK), so the cache is small.
    Text is measured and rasterised once per string (layout caches), so a face is needed only
    for new text: the amounts, the payment code and the countdown, at most six faces (the
    reference size of each weight included); rendering every screen of 200 sales in both
    languages, six faces reopened none, four reopened one per 20-30 sales. With the screen font
    beside it, the full font draws only what that one lacks (a store name), uncached.
    """
    return open_font(face, px)


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
    font = open_font(face, 24)
    try:
        missing = font.getmask("\U0010fffd").getbbox()
        return all(font.getmask(ch).getbbox() not in (None, missing) for ch in _PROBE)
    except OSError:
        return False


def screen_font(fonts: FontSet, directory: Path = SCREEN_FONT_DIR) -> ScreenFont | None:
    """The screen font for `fonts` when they are the Noto Sans CJK TC it was cut from and it
    draws the same pixels (a different Noto release would not: then None, the full font alone)."""
    try:
        if open_font(fonts.regular, 24).getname()[0] != _SCREEN_FAMILY:
            return None
        chars = frozenset((directory / "chars.txt").read_text(encoding="utf-8").rstrip("\n"))
        screen = ScreenFont(
            regular=FontFace(path=directory / "NotoSansCJKtc-Regular.subset.otf", in_memory=True),
            bold=FontFace(path=directory / "NotoSansCJKtc-Bold.subset.otf", in_memory=True),
            chars=chars,
        )
        for full, cut in ((fonts.regular, screen.regular), (fonts.bold, screen.bold)):
            for text, px in _SAME_PIXELS:
                a, b = open_font(full, px), load_font(cut, px)
                if a.getmetrics() != b.getmetrics() or bytes(a.getmask(text)) != bytes(b.getmask(text)):
                    log.info("screen font not used: it draws differently from %s", full.path)
                    return None
    except OSError as exc:  # not installed with the package, unreadable
        log.info("screen font not used: %s", exc)
        return None
    return screen


def _with_screen_font(fonts: FontSet) -> FontSet:
    return dataclasses.replace(fonts, screen=screen_font(fonts))


def _face(path: Path) -> FontFace:
    try:
        face = FontFace(path=path, index=_tc_index(path))
        open_font(face, 12)
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
        return _with_screen_font(FontSet(regular=face, bold=face))
    tried = []
    for regular, bold in candidates:
        tried.append(regular)
        if not Path(regular).is_file():
            continue
        regular_face = _face(Path(regular))
        bold_face = _face(Path(bold)) if Path(bold).is_file() else regular_face
        if _covers_cjk(regular_face):
            return _with_screen_font(FontSet(regular=regular_face, bold=bold_face))
    raise FontNotFoundError(
        "no CJK font found (looked for " + ", ".join(tried) + "); install it with "
        "`sudo apt-get install fonts-noto-cjk` or set display.font_path to a Noto Sans CJK file"
    )
