"""Build the screen font: Noto Sans CJK TC cut down to the characters the counter screens show.

Every FreeType face the display opens maps the whole Noto Sans CJK collection (19-20 MB a
weight) and touches ~2-4 MB of it, once per face and size: ~10 MB of the daemon's resident
memory for the six faces it keeps (bench/footprint.py, issue 17). The screens' own texts use a
few hundred characters, so a subset of the same font with only those (and ASCII, Latin-1 and
the punctuation blocks) is ~130 kB a weight, read once into memory and shared by every size.
`drivers.display.fonts` draws a string with it when the subset has all of its characters, and
with the full collection otherwise (a store name, a reason added without rebuilding this); the
glyphs, hints and metrics are the same font's, so the pixels are identical either way
(tests/unit/test_display_fonts.py).

Run by hand when a screen text gains a character (a test says so), with fontTools installed
(`pip install fonttools`; a tool of this script only, not a dependency of the agent):

    python deploy/screen_font.py [--source-dir /usr/share/fonts/opentype/noto]

It takes a few seconds. The output is drivers/display/screen_font/: one .otf a weight,
`chars.txt` (the characters it covers) and the font's licence (SIL OFL 1.1, which allows
modified versions; Noto declares no reserved font name).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
OUT: Final = ROOT / "drivers" / "display" / "screen_font"
# The modules whose string constants reach the screens (what the layout draws, the failure
# reasons the payment flow shows). The store name comes from the config and is not known here.
SOURCES: Final = ("drivers/display/layout.py", "pos_bridge/payment_flow.py")
WEIGHTS: Final = ("Regular", "Bold")
FACE: Final = "Noto Sans CJK TC"
BLOCKS: Final = (
    (0x20, 0x7E),  # ASCII: English texts, amounts, payment codes
    (0xA0, 0xFF),  # Latin-1
    (0x2010, 0x2027),  # dashes, quotes, ellipsis
    (0x2030, 0x205E),
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0xFF01, 0xFF5E),  # full-width forms (，：！（）)
)
_CJK: Final = re.compile(r"[\u2e80-\u2fff\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def screen_texts(root: Path = ROOT) -> list[str]:
    """Every string constant in SOURCES that holds a CJK character."""
    texts: list[str] = []
    for name in SOURCES:
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        texts += [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _CJK.search(node.value)
        ]
    return texts


def characters(root: Path = ROOT) -> str:
    """The characters the screen font is cut to, sorted: the blocks and the screens' texts
    (chars.txt lists those of them the font has)."""
    chars = {chr(code) for low, high in BLOCKS for code in range(low, high + 1)}
    chars |= {ch for text in screen_texts(root) for ch in text if ch.isprintable()}
    return "".join(sorted(chars))


def build(source_dir: Path, out: Path = OUT) -> None:
    from fontTools import subset
    from fontTools.ttLib import TTCollection

    wanted = characters()
    covered = set(wanted)
    out.mkdir(parents=True, exist_ok=True)
    for weight in WEIGHTS:
        collection = TTCollection(str(source_dir / f"NotoSansCJK-{weight}.ttc"), lazy=True)
        font = next(f for f in collection.fonts if f["name"].getDebugName(1) == FACE)
        options = subset.Options()
        options.layout_features = ["*"]  # shaping as the full font shapes
        options.name_IDs = ["*"]
        options.name_languages = ["*"]
        options.notdef_outline = True
        options.hinting = True  # FreeType hints the subset as it hints the full font
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes={ord(ch) for ch in wanted})
        subsetter.subset(font)
        covered &= {chr(code) for code in font.getBestCmap()}  # what the font has of the blocks
        font.save(str(out / f"NotoSansCJKtc-{weight}.subset.otf"))
        print(f"{weight}: {(out / f'NotoSansCJKtc-{weight}.subset.otf').stat().st_size} bytes")
    missing = {ch for text in screen_texts() for ch in text if ch.isprintable()} - covered
    if missing:
        raise SystemExit(f"{FACE} has no glyph for {''.join(sorted(missing))}")
    (out / "chars.txt").write_text("".join(sorted(covered)) + "\n", encoding="utf-8")
    licence = Path("/usr/share/doc/fonts-noto-cjk/copyright")
    if licence.is_file():
        shutil.copyfile(licence, out / "LICENSE.txt")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source-dir", type=Path, default=Path("/usr/share/fonts/opentype/noto"))
    args = parser.parse_args()
    try:
        build(args.source_dir)
    except ImportError:
        print("fontTools is needed: pip install fonttools", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
