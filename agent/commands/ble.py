"""Bluetooth LE tools: `ble decode HEX` prints the beacon frames in a raw advertising payload;
`ble record --out FILE` captures adverts on this machine's adapter as replayable JSONL.

A recording never contains a raw device address: each address is replaced by a pseudonym
that is stable within the recording (so replay still tells devices apart) and unlinkable
to the real one (the key is random and forgotten when the recording ends).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.cli import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ble_command", metavar="ACTION", required=True)
    decode = sub.add_parser(
        "decode",
        help="decode a raw advertising payload (AD structures, hex as btmon shows it)",
        description="Decode the AD structures of one advert and print its beacon frames as JSON.",
    )
    decode.add_argument("hex", nargs="+", help="payload bytes in hex; spaces and colons are ignored")
    record = sub.add_parser(
        "record",
        help="capture adverts from the Bluetooth adapter into a JSONL file for replay",
        description="Scan with the configured adapter and write one JSON line per advert "
        "(addresses pseudonymised). Stop with Ctrl-C or --seconds.",
    )
    record.add_argument("--out", type=Path, required=True, metavar="FILE", help="JSONL file to write")
    record.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    add_config_argument(record)


def run(args: argparse.Namespace) -> int:
    if args.ble_command == "decode":
        return _decode(" ".join(args.hex))
    return _record(args)


def _decode(text: str) -> int:
    from drivers.ble.frames import decode_payload, frame_to_dict, parse_ad_structures, parse_hex

    payload = parse_hex(text)
    if payload is None:
        print(f"ble decode: not hex: {text!r}", file=sys.stderr)
        return 1
    if parse_ad_structures(payload) is None:
        print("ble decode: malformed payload: an AD structure runs past the end", file=sys.stderr)
        return 1
    found = decode_payload(payload)
    if not found:
        print(
            "ble decode: no beacon frame (iBeacon, Eddystone, LINE Simple Beacon) in this payload",
            file=sys.stderr,
        )
        return 1
    print(json.dumps([frame_to_dict(frame) for frame in found], ensure_ascii=False))
    return 0


def _record(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from agent.cli import DEFAULT_CONFIG
    from agent.commands import load_or_exit
    from agent.config import BLEConfig
    from agent.logs import setup_logging
    from drivers.ble.record import install_stop_on_sigint, record
    from drivers.ble.scanner import BleakSource

    setup_logging("ERROR")  # progress and faults are reported by `say`, once each
    use_defaults = args.config == DEFAULT_CONFIG and not args.config.exists()
    ble = BLEConfig() if use_defaults else load_or_exit(args.config).ble
    if args.seconds is not None and args.seconds <= 0:
        print("ble record: --seconds must be positive", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(f"ble record: {text}", file=sys.stderr)

    async def main() -> int:
        stop = asyncio.Event()
        install_stop_on_sigint(stop)
        source = BleakSource(adapter=ble.adapter, scanning_mode=ble.scanning_mode)
        say(f"recording from {ble.adapter} ({ble.scanning_mode}) into {args.out}; Ctrl-C to stop")
        result = await record(
            source, args.out, seconds=args.seconds, wall_clock=time.time, say=say, stop=stop
        )
        say(f"wrote {result.adverts} adverts from {result.devices} devices to {args.out}")
        if result.adverts == 0 and result.down:
            say(f"nothing recorded: the scanner is down ({result.last_status})")
            return 1
        return 0

    try:
        return asyncio.run(main())
    except OSError as exc:
        print(f"ble record: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
