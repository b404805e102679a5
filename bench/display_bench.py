"""Customer-display render speed: our pay screen vs the naive pipeline; prints one JSON object.

Run by hand: `python bench/display_bench.py [--iterations N]`. Our pipeline and the naive ones
run in turn within each iteration (shared CI machines are noisy). Figures:
- render_ms_median: a full 800x480 pay screen with a new payment URL and amount every time
  (QR encoded, layout planned, static layer painted, countdown drawn); fonts are cached, as on
  the device after the first sale.
- tick_ms_median: the same pay screen one second later (what the countdown costs each second).
- naive_ms_median: `qrcode.make(url)`, scaled to the same QR size, pasted onto a background.
- naive_with_text_ms_median: the naive pipeline plus drawing the same text with ImageDraw
  (fonts preloaded), i.e. the same screen without our caches or encoder.
- encode_ms_median: each QR encoder alone on the payment URL (why zxing-cpp was chosen).
- png_encode_ms_median / rgb565_pack_ms_median: what the web and framebuffer drivers add.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import qrcode
from PIL import Image, ImageDraw

from drivers.display.fonts import find_fonts
from drivers.display.framebuffer import FbGeometry, pack
from drivers.display.layout import plan, render
from drivers.display.qr import Ecc, encode
from drivers.display.screens import PayScreen
from drivers.display.web import encode_png

SIZE = (800, 480)
NOW = 1_790_000_000.0


def pay_url(i: int) -> str:
    """A LINE Pay web payment URL of realistic length (version 7 at EC M), different for every i."""
    return (
        "https://sandbox-web-pay.line.me/web/payment/wait?transactionReserveId="
        f"UW1KOHRsWGtKU3VY{i:016d}&locale=zh-TW_LP"
    )


def median_ms(func: Callable[[int], object], iterations: int) -> float:
    times = []
    for i in range(iterations):
        start = time.perf_counter()
        func(i)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def interleaved_medians_ms(
    funcs: dict[str, Callable[[int], object]], iterations: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU times of several pipelines run in turn, so that load from other
    processes on a shared machine falls on all of them alike and their ratio stays meaningful
    (the CPU time of this process is what a quiet machine would show as wall time)."""
    wall: dict[str, list[float]] = {name: [] for name in funcs}
    cpu: dict[str, list[float]] = {name: [] for name in funcs}
    for i in range(iterations):
        for name, func in funcs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            func(i)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
            wall[name].append((time.perf_counter() - start) * 1000)

    def medians(samples: dict[str, list[float]]) -> dict[str, float]:
        return {name: round(statistics.median(values), 3) for name, values in samples.items()}

    return medians(wall), medians(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    n = args.iterations
    few = max(20, n // 4)
    fonts = find_fonts()
    render(
        PayScreen(1, pay_url(10**9), "123456789012", NOW + 300), size=SIZE, lang="zh-TW", fonts=fonts, now=NOW
    )

    def ours(i: int) -> Image.Image:
        screen = PayScreen(100 + i, pay_url(i), f"{123456789000 + i:012d}", NOW + 300)
        return render(screen, size=SIZE, lang="zh-TW", fonts=fonts, now=NOW).image

    fixed = PayScreen(180, pay_url(10**8), "123456789012", NOW + 300)
    reference = render(fixed, size=SIZE, lang="zh-TW", fonts=fonts, now=NOW)
    qr_item = reference.plan.qr
    assert qr_item is not None
    layout = plan(fixed, size=SIZE, lang="zh-TW", pending_sync=0, fonts=fonts)

    def tick(i: int) -> Image.Image:
        return render(fixed, size=SIZE, lang="zh-TW", fonts=fonts, now=NOW + 1 + (i % 250)).image

    def naive(i: int) -> Image.Image:
        code = qrcode.make(pay_url(10_000 + i)).get_image().convert("L")
        code = code.resize((qr_item.side, qr_item.side), Image.Resampling.NEAREST)
        background = Image.new("RGB", SIZE, (255, 255, 255))
        background.paste(code, (qr_item.x, qr_item.y))
        return background

    loaded = {(t.px, t.bold): fonts.font(t.px, bold=t.bold) for t in layout.texts}

    def naive_with_text(i: int) -> Image.Image:
        image = naive(i)
        draw = ImageDraw.Draw(image)
        for t in layout.texts:
            draw.text((t.x, t.y), t.text, fill=t.color, font=loaded[(t.px, t.bold)], anchor="la")
        return image

    uncached = encode.__wrapped__  # the encoders themselves, without the per-URL cache
    encoders: dict[str, Callable[[int], object]] = {
        "zxing-cpp": lambda i: uncached(pay_url(20_000 + i), Ecc.M, encoder="zxing-cpp"),
        "qrcode": lambda i: uncached(pay_url(30_000 + i), Ecc.M, encoder="qrcode"),
    }
    try:
        import segno

        encoders["segno"] = lambda i: segno.make_qr(pay_url(40_000 + i), error="m", boost_error=False).matrix
    except ImportError:
        pass

    frame = reference.image
    fb = FbGeometry(width=SIZE[0], height=SIZE[1], bits_per_pixel=16, stride=SIZE[0] * 2)
    medians, cpu = interleaved_medians_ms(
        {"ours": ours, "naive": naive, "naive_with_text": naive_with_text}, n
    )
    render_ms, naive_ms = medians["ours"], medians["naive"]
    result: dict[str, Any] = {
        "bench": "display",
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "iterations": n,
        "qr_version": (qr_item.modules - 17) // 4,
        "qr_module_px": qr_item.module_px,
        "render_ms_median": render_ms,
        "tick_ms_median": median_ms(tick, n),
        "naive_ms_median": naive_ms,
        "naive_with_text_ms_median": medians["naive_with_text"],
        "speedup_vs_naive": round(naive_ms / render_ms, 2),
        "render_cpu_ms_median": cpu["ours"],
        "naive_cpu_ms_median": cpu["naive"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "encode_ms_median": {name: median_ms(fn, few) for name, fn in encoders.items()},
        "png_encode_ms_median": median_ms(lambda i: encode_png(frame), few),
        "rgb565_pack_ms_median": median_ms(lambda i: pack(frame, fb), few),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
