"""Play the whole counter flow on this machine: simulated beacons, LINE Pay and Messaging API
emulators, the customer display in a browser. No config file needed; the generated one is
written to STATE_DIR/demo.toml so other commands can use it with --config."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="play the visit once and exit (0 = all steps ok)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the demo's state here (default: a new temp dir)",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run(args: argparse.Namespace) -> int:
    from agent.demo import run_demo
    from agent.logs import setup_logging

    setup_logging(args.log_level)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="shopedge-demo-"))
    try:
        return asyncio.run(run_demo(state_dir.resolve(), once=args.once))
    except KeyboardInterrupt:
        return 0
