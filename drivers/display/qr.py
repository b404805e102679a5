"""QR codes for the display: encoding to a module matrix and pixel-exact scaling.

Owns the rules the shopper's phone cares about: the error-correction level per use (M for
payment URLs, Q for the binding QR, which survives a reflective counter better), a quiet zone
of 4 modules, and integer pixels per module, never resampled (NEAREST at an integer factor is
pure replication), sized to the largest that fits the region.

Encoder choice, measured on this machine for a 120-character LINE Pay URL at EC M (version 7):
zxing-cpp 0.47 ms, segno 9.9 ms, qrcode 12.4 ms, qrcodegen 20.1 ms. zxing-cpp (C++, with
ZXing's full mask-penalty selection) is 20x faster than the best pure-Python encoder and ships
aarch64 wheels for the Pi, so it is the encoder; `qrcode` (already a dependency) is the
fallback when zxing-cpp cannot be imported, and both are tested to decode identically.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from PIL import Image

from drivers.display.screens import DisplayError

__all__ = ["QUIET_MODULES", "Ecc", "QRMatrix", "encode", "module_px_for", "qr_image"]

QUIET_MODULES: Final = 4  # ISO/IEC 18004 minimum quiet zone


class Ecc(StrEnum):
    """Error-correction level: L 7 %, M 15 %, Q 25 %, H 30 % of codewords recoverable."""

    L = "L"
    M = "M"
    Q = "Q"
    H = "H"


@dataclass(frozen=True, kw_only=True)
class QRMatrix:
    """A QR symbol without quiet zone: `size`x`size` bytes, 0 = dark module, 255 = light."""

    size: int
    modules: bytes
    ecc: Ecc

    @property
    def version(self) -> int:
        return (self.size - 17) // 4


def _encode_zxing(text: str, ecc: Ecc) -> QRMatrix:
    import zxingcpp

    barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level=ecc.value)
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    size = int(image.shape[0])
    return QRMatrix(size=size, modules=bytes(memoryview(image)), ecc=ecc)  # type: ignore[arg-type]  # buffer protocol, not in the stub


def _encode_qrcode(text: str, ecc: Ecc) -> QRMatrix:
    import qrcode
    import qrcode.constants as qc

    levels = {
        Ecc.L: qc.ERROR_CORRECT_L,
        Ecc.M: qc.ERROR_CORRECT_M,
        Ecc.Q: qc.ERROR_CORRECT_Q,
        Ecc.H: qc.ERROR_CORRECT_H,
    }
    code = qrcode.QRCode(error_correction=levels[ecc], border=0, box_size=1)
    code.add_data(text.encode("utf-8"))
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    return QRMatrix(
        size=len(matrix), modules=bytes(0 if dark else 255 for row in matrix for dark in row), ecc=ecc
    )


def _pick_encoder() -> str:
    try:
        import zxingcpp  # noqa: F401
    except ImportError:
        return "qrcode"
    return "zxing-cpp"


ENCODER: Final = _pick_encoder()


@functools.lru_cache(maxsize=32)
def encode(text: str, ecc: Ecc, *, encoder: str = ENCODER) -> QRMatrix:
    """The QR matrix for `text` at the smallest version that holds it.

    Raises:
        DisplayError: the text does not fit any QR version at this level.
    """
    try:
        return _encode_zxing(text, ecc) if encoder == "zxing-cpp" else _encode_qrcode(text, ecc)
    except (ValueError, RuntimeError) as exc:
        raise DisplayError(f"cannot encode {len(text)} characters as a QR code at EC {ecc}: {exc}") from exc


def module_px_for(matrix: QRMatrix, side: int) -> int:
    """The largest whole number of pixels per module that fits `side` with the quiet zone (0 if none)."""
    return max(0, side // (matrix.size + 2 * QUIET_MODULES))


# 3: the idle screen's friend QR and the last sale's two; every sale's binding QR is new, so
# more entries only kept ~140 kB images that are never drawn again (bench/footprint.py).
@functools.lru_cache(maxsize=3)
def qr_image(matrix: QRMatrix, module_px: int) -> Image.Image:
    """The symbol with its quiet zone, `module_px` pixels per module, as an "L" image."""
    if module_px < 1:
        raise DisplayError("QR region too small for one pixel per module")
    core = Image.frombytes("L", (matrix.size, matrix.size), matrix.modules)
    scaled = core.resize((matrix.size * module_px,) * 2, Image.Resampling.NEAREST)
    quiet = QUIET_MODULES * module_px
    full = Image.new("L", (scaled.width + 2 * quiet,) * 2, 255)
    full.paste(scaled, (quiet, quiet))
    return full
