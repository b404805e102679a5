"""Run the agent daemon in the foreground until SIGTERM or SIGINT (systemd starts this)."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli import add_config_argument
from agent.commands import load_or_exit

if TYPE_CHECKING:
    from agent.db import Migration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def run(args: argparse.Namespace) -> int:
    from agent.malloc import limit_malloc_arenas, return_freed_memory

    limit_malloc_arenas()  # before asyncio.run starts any worker thread
    return_freed_memory()
    config = load_or_exit(args.config)
    # A schema to migrate (a first start, an upgrade) is migrated by a child process while this
    # one imports the daemon: Alembic's ~25 MB stay out of it, and its ~0.4 s overlaps them.
    migration = _start_migration(config.db_path)

    from agent.config import secret_values
    from agent.daemon import run_agent
    from agent.logs import setup_logging

    setup_logging(args.log_level, secrets=secret_values(config))
    # uvloop (libuv) runs the one event loop: the stdlib loop's own Python (selectors, callback
    # handles, transports) was the largest share of a sale's CPU after the display, and uvloop
    # took a scan-code sale from ~24-29 to ~20 ms in bench/footprint.py for ~3 MB of RSS.
    import uvloop

    return uvloop.run(run_agent(config, migration=migration))


def _start_migration(path: Path) -> Migration | None:
    """The state DB's migration (its child started if the schema differs), or None when the
    stored revisions cannot be read here: the daemon tries again and says why in its log
    (logging is not set up yet)."""
    from agent.db import start_migration

    try:
        return start_migration(path)
    except (sqlite3.Error, OSError):
        return None
