"""Customer display tools. `shopedge display render` draws any screen to a PNG, exactly as the
counter would show it: for technicians checking a panel size, and for support."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

SCREENS = ("idle", "pay", "waiting", "paid", "failed", "joined")


def _size(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{3,4})x(\d{3,4})", value)
    if not match or not (240 <= int(match[1]) <= 4096 and 240 <= int(match[2]) <= 4096):
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT between 240 and 4096, got {value!r}")
    return int(match[1]), int(match[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="display_command", metavar="ACTION", required=True)
    render = sub.add_parser(
        "render",
        help="render a customer screen to a PNG file",
        description="Render a customer screen to a PNG, e.g. "
        "`shopedge display render --screen pay --amount 180 --qr-url URL --size 800x480 --out pay.png`.",
    )
    render.add_argument("--screen", choices=SCREENS, required=True, help="which screen")
    render.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="where to write the PNG")
    render.add_argument(
        "--size", type=_size, default=None, metavar="WxH", help="pixels (default: config or 800x480)"
    )
    render.add_argument(
        "--lang", choices=("zh-TW", "en"), default=None, help="first language (default: config)"
    )
    render.add_argument(
        "--amount", type=int, default=None, metavar="TWD", help="amount in NT$ (pay/waiting/paid)"
    )
    render.add_argument(
        "--qr-url",
        default=None,
        metavar="URL",
        help="the QR: payment URL (pay), binding URL (paid), friend URL (idle)",
    )
    render.add_argument("--token", default=None, metavar="DIGITS", help="12-digit payment access token (pay)")
    render.add_argument(
        "--expires-in", type=float, default=300.0, metavar="S", help="pay countdown (default 300)"
    )
    render.add_argument("--store-name", default=None, help="store name (idle; default: config device.name)")
    render.add_argument("--reason-zh", default="付款未完成", help="failure reason in Chinese (failed)")
    render.add_argument(
        "--reason-en", default="Payment was not completed", help="failure reason in English (failed)"
    )
    render.add_argument(
        "--pending", type=int, default=0, metavar="N", help="records waiting to sync (offline banner)"
    )
    render.add_argument(
        "--font", type=Path, default=None, metavar="PATH", help="CJK font file (default: found)"
    )
    render.add_argument(
        "--config", type=Path, default=None, metavar="PATH", help="take size, language, font from it"
    )


def run(args: argparse.Namespace) -> int:
    from agent.commands import load_or_exit
    from drivers.display.fonts import FontNotFoundError, find_fonts
    from drivers.display.layout import render
    from drivers.display.png import write_png_atomic
    from drivers.display.screens import (
        DisplayError,
        FailedScreen,
        IdleScreen,
        JoinedScreen,
        PaidScreen,
        PayScreen,
        Screen,
        WaitingScreen,
    )

    config = load_or_exit(args.config) if args.config is not None else None
    size = args.size or (config.display.dimensions if config else (800, 480))
    lang = args.lang or (config.display.language if config else "zh-TW")
    font = args.font or (config.display.font_path if config else None)
    store = args.store_name or (config.device.name if config else "ShopEdge")
    needs_amount = {"pay", "waiting", "paid"}
    if args.screen in needs_amount and args.amount is None:
        return _usage(f"--screen {args.screen} needs --amount")
    if args.screen == "pay" and not args.qr_url:
        return _usage("--screen pay needs --qr-url (the payment URL)")
    now = time.time()
    try:
        screen: Screen
        match args.screen:
            case "idle":
                screen = IdleScreen(store, args.qr_url)
            case "pay":
                screen = PayScreen(args.amount, args.qr_url, args.token, now + args.expires_in)
            case "waiting":
                screen = WaitingScreen(args.amount)
            case "paid":
                screen = PaidScreen(args.amount, args.qr_url)
            case "failed":
                screen = FailedScreen(args.reason_zh, args.reason_en)
            case _:
                screen = JoinedScreen(args.amount)
    except DisplayError as exc:
        return _usage(str(exc))
    try:
        fonts = find_fonts(font)
        frame = render(screen, size=size, lang=lang, fonts=fonts, now=now, pending_sync=args.pending)
        write_png_atomic(frame.image, args.out)
    except FontNotFoundError as exc:
        print(f"shopedge display render: {exc}", file=sys.stderr)
        return 1
    except DisplayError as exc:
        print(f"shopedge display render: {exc}", file=sys.stderr)
        return 1
    qr = frame.plan.qr
    detail = f", QR version {(qr.modules - 17) // 4} EC {qr.ecc} at {qr.module_px} px/module" if qr else ""
    print(f"wrote {args.out} ({args.screen}, {size[0]}x{size[1]}, {lang}{detail})")
    return 0


def _usage(message: str) -> int:
    print(f"shopedge display render: {message}", file=sys.stderr)
    return 2
