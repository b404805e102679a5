"""The daemon: open state, migrate, run the components under the supervisor until a signal.

Shutdown order on SIGTERM/SIGINT: stop accepting work, cancel components (their `finally`
blocks finish in-flight writes), close the outbox (after every component has stopped, so no
put is cut off), record a clean stop, close the database.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from agent import __version__
from agent.config import ShopEdgeConfig
from agent.context import AgentContext
from agent.db import Migration, MigrationError, MigrationFailed, open_state_db, start_migration
from agent.sdnotify import systemd_component
from agent.state import finish_run, last_run_was_clean, start_run
from agent.supervisor import Supervisor
from agent.wiring import build_components
from agent.wiring.health import OUTBOX_LEVELS
from base.statedb import RouteClosed, StateDB, WriteRoute
from offline_queue import Outbox, OutboxClosedError, OutboxError

__all__ = ["StateUnavailable", "run_agent"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class StateUnavailable(Exception):
    """The state database cannot be opened, migrated or written (full disk, read-only, I/O error)."""


async def run_agent(
    config: ShopEdgeConfig,
    *,
    on_started: Callable[[AgentContext, Supervisor], None] | None = None,
    migration: Migration | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `Supervisor.stop()`); returns the process exit code.

    `migration`: the state DB's migration, already checked and started by the caller (`shopedge
    run` does it before its own imports); without it the daemon checks the schema itself.

    A state directory that cannot be written (a full disk) is one error line and exit code 1,
    not a traceback.
    """
    try:
        db = await asyncio.to_thread(_open_state, config, migration)
    except StateUnavailable as exc:
        log.error("cannot start: the state database cannot be written", extra={"error": str(exc)})
        return 1
    except MigrationFailed as exc:
        log.error(
            "cannot start: the state database could not be migrated",
            extra={"error": str(exc), "output": exc.output},
        )
        return 1
    ctx = AgentContext(config=config, db=db)
    run_id = 0
    outbox: Outbox | None = None
    try:
        try:
            outbox = await Outbox.open(
                config.db_path,
                disk_budget_bytes=config.storage.disk_budget_mb * 2**20,
                max_attempts=config.storage.outbox_max_attempts,
                on_health=lambda state, detail: ctx.health.set("outbox", OUTBOX_LEVELS[state], detail),
            )
        except (OutboxError, sqlite3.Error) as exc:
            log.error("cannot open the outbox; nothing can be recorded safely", extra={"error": str(exc)})
            return 1
        ctx.services["outbox"] = outbox
        db.route_writes(_via_outbox(outbox))  # one writer thread for the file: group commits
        if not await asyncio.to_thread(last_run_was_clean, db):
            log.warning("previous run did not stop cleanly; reconciling state at start")
        try:
            run_id = await asyncio.to_thread(start_run, db, __version__)
        except sqlite3.Error as exc:
            log.error(
                "cannot start: the state database cannot be written",
                extra={"error": f"{config.db_path}: {exc}"},
            )
            return 1
        components = build_components(ctx)
        notifier = systemd_component(ctx.health, [c.name for c in components])
        if notifier is not None:
            components.append(notifier)
        supervisor = Supervisor(components, ctx.health)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, supervisor, sig)
        log.info(
            "shopedge started",
            extra={
                "version": __version__,
                "store_id": config.device.store_id,
                "device_id": config.device.device_id,
                "components": [c.name for c in supervisor.components],
            },
        )
        if on_started is not None:
            on_started(ctx, supervisor)
        try:
            await supervisor.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            db.route_writes(None)
            await outbox.close()
        try:
            await asyncio.to_thread(finish_run, db, run_id)
        except sqlite3.Error as exc:  # a full disk at SIGTERM: one line, not a traceback
            log.error(
                "stopped, but the clean stop could not be recorded; the next start reconciles",
                extra={"error": f"{config.db_path}: {exc}"},
            )
            return 1
        log.info("shopedge stopped cleanly")
        return 0
    finally:
        db.route_writes(None)
        if outbox is not None:
            await outbox.close()
        db.close()


def _via_outbox(outbox: Outbox) -> WriteRoute:
    """The state DB's writes on the outbox's writer; on the pool again if that writer stops."""

    async def route(body: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return await outbox.transaction(body)
        except OutboxClosedError:  # raised before the body ran: safe to run it elsewhere
            raise RouteClosed from None

    return route


def _on_signal(supervisor: Supervisor, sig: signal.Signals) -> None:
    log.info("signal received, stopping", extra={"signal": sig.name})
    supervisor.stop()


def _open_state(config: ShopEdgeConfig, migration: Migration | None) -> StateDB:
    try:
        db = open_state_db(config.db_path)
    except OSError as exc:
        raise StateUnavailable(f"{config.db_path.parent}: {exc.strerror or exc}") from None
    try:
        pending = migration if migration is not None else start_migration(config.db_path)
        if pending.wait():
            log.info("state database migrated", extra={"path": str(config.db_path)})
    except MigrationError as exc:
        db.close()
        raise StateUnavailable(str(exc)) from None
    except (sqlite3.Error, OSError) as exc:  # reading the stored revisions
        db.close()
        raise StateUnavailable(f"{config.db_path}: {exc}") from None
    except BaseException:
        db.close()
        raise
    return db
