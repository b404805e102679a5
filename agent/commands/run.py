"""Run the agent daemon in the foreground until SIGTERM or SIGINT (systemd starts this)."""

from __future__ import annotations

import argparse

from agent.cli import add_config_argument
from agent.commands import load_or_exit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run(args: argparse.Namespace) -> int:
    from agent.config import secret_values
    from agent.daemon import run_agent
    from agent.logs import setup_logging
    from agent.malloc import limit_malloc_arenas, return_freed_memory

    limit_malloc_arenas()  # before asyncio.run starts any worker thread
    return_freed_memory()
    config = load_or_exit(args.config)
    setup_logging(args.log_level, secrets=secret_values(config))
    # uvloop (libuv) runs the one event loop: the stdlib loop's own Python (selectors, callback
    # handles, transports) was the largest share of a sale's CPU after the display, and uvloop
    # took a scan-code sale from ~24-29 to ~20 ms in bench/footprint.py for ~3 MB of RSS.
    import uvloop

    return uvloop.run(run_agent(config))
