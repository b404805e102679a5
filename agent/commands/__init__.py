"""One module per `shopedge` subcommand (see `agent.cli`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path

from agent.config import ConfigError, ShopEdgeConfig, load_config

__all__ = ["load_or_exit", "not_built", "until_signal"]


def load_or_exit(path: Path) -> ShopEdgeConfig:
    """Load the config or print one line per problem and exit 2 (never a traceback)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def not_built(command: str, issue: str) -> int:
    print(f"shopedge {command}: not built yet (planned in {issue}).", file=sys.stderr)
    return 2


async def until_signal(work: Awaitable[object]) -> None:
    """Await `work` until SIGTERM or SIGINT cancels it: the clean stop of a long-running command."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await work
