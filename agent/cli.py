"""The `shopedge` command line: one subcommand per job a technician or the system does.

Each subcommand lives in `agent/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`; heavy imports happen inside `run`, so `shopedge --help` stays fast on a Pi.
Exit codes: 0 success, 1 the job ran and found a problem, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__

__all__ = ["COMMANDS", "DEFAULT_CONFIG", "build_parser", "main"]

DEFAULT_CONFIG = Path(os.environ.get("SHOPEDGE_CONFIG", "/etc/shopedge/config.toml"))

COMMANDS: dict[str, str] = {
    "run": "run the agent daemon (what systemd starts)",
    "demo": "play the whole counter flow on this machine with emulators",
    "doctor": "self-test every part and say how to fix what fails",
    "provision": "set this device up: config, secrets, identity, live credential checks",
    "ble": "Bluetooth LE tools: decode an advert, record a capture",
    "display": "customer display tools: render a screen to a PNG",
    "queue": "offline outbox: stats, dead letters, retry",
    "binding": "membership-binding QR: print the URL for an order",
    "report": "the counter funnel: payments, friends, coupons, cost per friend",
    "relay": "run the LINE webhook relay (in the merchant's cloud, not on the Pi)",
    "cloud": "the chain's cloud side: fleet ingest, cross-store report, device config, HQ page",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shopedge",
        description="ShopEdge: the LINE Pay counter agent. Turns every payment into a bound "
        "LINE friend with a welcome coupon, offline-tolerant.",
    )
    parser.add_argument("--version", action="version", version=f"shopedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        module = importlib.import_module(f"agent.commands.{name}")
        child = sub.add_parser(name, help=summary, description=(module.__doc__ or summary).strip())
        module.add_arguments(child)
        child.set_defaults(_module=module)
    return parser


def add_config_argument(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The common `--config PATH` option (default $SHOPEDGE_CONFIG or /etc/shopedge/config.toml)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None if required else DEFAULT_CONFIG,
        required=required,
        metavar="PATH",
        help=f"config file (default: {DEFAULT_CONFIG})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    # Pydantic looks for plugins in every installed distribution's entry points when the first
    # model is built (~30 ms of a start, importlib.metadata included); ShopEdge uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
