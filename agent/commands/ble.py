"""Bluetooth LE tools: `ble decode HEX` prints the beacon frames in a raw advertising payload;
`ble record --out FILE` captures adverts on this machine's adapter as replayable JSONL;
`ble advertise --hwid HWID` prints (and, without --dry-run, broadcasts) the counter's LINE
Simple Beacon advert.

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
    advertise = sub.add_parser(
        "advertise",
        help="advertise this counter as a LINE Simple Beacon (print the advert with --dry-run)",
        description="Print the LINE Simple Beacon advertising data as hex (one AD structure per line, "
        "then the whole 31-byte payload on one line) and, without --dry-run, broadcast it through "
        "BlueZ until Ctrl-C. Without --message the device message is the rotating code signed "
        "with binding.key.",
    )
    advertise.add_argument(
        "--hwid", required=True, help="the 10-hex-digit HWID from LINE Official Account Manager"
    )
    advertise.add_argument("--message", metavar="HEX", help="device message verbatim (1-13 bytes of hex)")
    advertise.add_argument("--dry-run", action="store_true", help="print the advert only; do not broadcast")
    add_config_argument(advertise)


def run(args: argparse.Namespace) -> int:
    if args.ble_command == "decode":
        return _decode(" ".join(args.hex))
    if args.ble_command == "advertise":
        return _advertise(args)
    return _record(args)


def _advertise(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import time

    from agent.cli import DEFAULT_CONFIG
    from agent.commands import load_or_exit
    from drivers.ble.advertiser import BeaconAdvertiser
    from drivers.ble.scanner import BlueZAdapterControl
    from drivers.ble.simple_beacon import SimpleBeaconError, advert, parse_device_message, parse_hwid
    from membership.beacon_code import code_at

    try:
        hwid = parse_hwid(args.hwid)
        fixed = parse_device_message(args.message) if args.message is not None else None
    except SimpleBeaconError as exc:
        print(f"ble advertise: {exc}", file=sys.stderr)
        return 2
    use_defaults = args.config == DEFAULT_CONFIG and not args.config.exists()
    config = None if use_defaults else load_or_exit(args.config)
    if fixed is not None:
        message = fixed

        def current() -> bytes:
            return message

    else:
        key = config.binding.key.get_secret_value().encode() if config is not None else b""
        if not key:
            print(
                "ble advertise: the rotating device message is signed with binding.key, which is not set "
                f"in {args.config}; set it, or give --message HEX",
                file=sys.stderr,
            )
            return 2

        def current() -> bytes:
            return code_at(key, hwid, time.time())

    built = advert(hwid, current())
    for structure in built.structures:
        print(structure.hex(" "))
    print(built.payload.hex())
    if args.dry_run:
        return 0
    adapter = config.ble.adapter if config is not None else "hci0"

    async def main() -> None:
        advertiser = BeaconAdvertiser(
            hwid=hwid, message=current, adapter=adapter, control=BlueZAdapterControl(adapter)
        )
        task = asyncio.create_task(advertiser.run(), name="shopedge.ble.advertise")
        said = ""
        try:
            while not task.done():
                status = advertiser.status
                if status.detail != said:
                    print(f"ble advertise: {status.detail}", file=sys.stderr)
                    said = status.detail
                await asyncio.wait([task], timeout=0.5)
            task.result()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    print("ble advertise: stopped", file=sys.stderr)
    return 0


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
