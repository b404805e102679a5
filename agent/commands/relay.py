"""Run the LINE webhook relay in the foreground (in the merchant's cloud, not on the Pi).

Listens on `relay.listen`; point the Messaging API channel's webhook URL at
`https://<host>/line/webhook` (behind TLS termination). Uses `[line].channel_secret` to verify
signatures and `[mqtt]` for the broker. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from agent.cli import add_config_argument
from agent.commands import load_or_exit, until_signal

if TYPE_CHECKING:
    from agent.config import ShopEdgeConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run(args: argparse.Namespace) -> int:
    from agent.config import secret_values
    from agent.logs import setup_logging

    config = load_or_exit(args.config)
    if not config.line.channel_secret.get_secret_value():
        print("config error: line.channel_secret: empty, cannot verify LINE signatures", file=sys.stderr)
        return 2
    setup_logging(args.log_level, secrets=secret_values(config))
    return asyncio.run(_serve(config))


async def _serve(config: ShopEdgeConfig) -> int:
    from cloud.relay import run_relay
    from offline_queue import OutboxError

    try:
        await until_signal(run_relay(config))
    except OutboxError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"relay: cannot listen on {config.relay.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
