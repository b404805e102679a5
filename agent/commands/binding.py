"""Membership-binding QR tools for technicians.

`shopedge binding url --order ORDER_ID` prints the URL and token the paid screen would show for
that order now, the decoded claims, the URL length and the QR version it needs (at most 6).
`shopedge binding verify TOKEN` says whether this device would accept a token, and why not:
the device's own rule (`membership.conversion.verify_on_device_blocking`), so a token already
used for a conversion or issued in the future is rejected here too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agent.cli import add_config_argument
from agent.commands import load_or_exit
from base.statedb import StateDB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    url = sub.add_parser("url", help="print the binding URL and token for an order")
    url.add_argument("--order", required=True, metavar="ORDER_ID", help="the POS order id")
    url.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_argument(url)
    verify = sub.add_parser("verify", help="check a token against this device's key and clock")
    verify.add_argument("token", help="the token (or a whole chat message containing it)")
    add_config_argument(verify)


def run(args: argparse.Namespace) -> int:
    from membership.binding import (
        MAX_QR_VERSION,
        BindingError,
        Rejection,
        decode_claims,
        find_token,
        issue_binding,
        qr_version,
    )
    from membership.conversion import verify_on_device_blocking

    config = load_or_exit(args.config)
    now = time.time()
    if args.action == "verify":
        token = find_token(args.token) or args.token.strip()
        db = _state_db_read_only(config.db_path)
        try:
            result = verify_on_device_blocking(
                db,
                token,
                key=config.binding.key.get_secret_value().encode(),
                store_id=config.device.store_id,
                device_id=config.device.device_id,
                now=now,
            )
        finally:
            if db is not None:
                db.close()
        if isinstance(result, Rejection):
            print(f"rejected: {result.value}")
            return 1
        print(
            f"valid: order {result.order_id}, store {result.store_id}, device {result.device_id}, "
            f"expires in {int(result.expires_at - now)} s"
        )
        return 0
    try:
        token, url = issue_binding(config, args.order, now)
    except BindingError as exc:
        print(f"binding error: {exc}", file=sys.stderr)
        return 2
    version = qr_version(url)
    claims = decode_claims(token)
    assert claims is not None
    info = {
        "order_id": args.order,
        "store_id": config.device.store_id,
        "device_id": config.device.device_id,
        "token": token,
        "url": url,
        "url_length": len(url),
        "qr_version": version,
        "issued_at": claims.issued_at,
        "expires_at": claims.expires_at,
    }
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
    else:
        for name, value in info.items():
            print(f"{name + ':':<12} {value}")
    if version > MAX_QR_VERSION:
        print(
            f"warning: the QR needs version {version} (> {MAX_QR_VERSION}); shorten the store, "
            "device or order ids",
            file=sys.stderr,
        )
    return 0


def _state_db_read_only(path: Path) -> StateDB | None:
    """The state DB for reading (never created or changed here), or None if there is none yet."""
    if not path.is_file():
        return None
    return StateDB(path, read_only=True)
