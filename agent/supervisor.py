"""The component supervisor: one TaskGroup, a restart loop per component, clean shutdown.

A component is anything with a `name` and an `async run(ctx)` that runs until cancelled.
If `run` raises, the supervisor marks the component red, waits a jittered backoff and starts
it again; the rest of the agent keeps working. A component that returns on its own is
finished (e.g. a one-shot reconciliation). Shutdown cancels every task and waits for their
`finally` blocks, so in-flight writes complete before the database is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from base.backoff import Backoff
from base.health import HealthBoard, Level

__all__ = ["Component", "Supervisor"]

log = logging.getLogger(__name__)


class Component(Protocol):
    """A long-running part of the agent (POS API, display, BLE, sync, ...)."""

    name: str

    async def run(self) -> None:
        """Run until cancelled. Raising means the component crashed and will be restarted."""


class Supervisor:
    """Runs components, restarts the ones that crash, and stops them all on request."""

    def __init__(
        self,
        components: Sequence[Component],
        health: HealthBoard,
        *,
        backoff_factory: Callable[[], Backoff] = lambda: Backoff(base=0.5, cap=30.0),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique: {names}")
        self.components = list(components)
        self.health = health
        self._backoff_factory = backoff_factory
        self._sleep = sleep
        self._stop = asyncio.Event()
        self.restarts: dict[str, int] = {name: 0 for name in names}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run every component until `stop()`; returns once all have shut down."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._keep_running(c), name=f"shopedge.{c.name}.run")
                    for c in self.components
                ]
                await self._stop.wait()
                log.info("shutting down", extra={"components": len(tasks)})
                for task in tasks:
                    task.cancel()
        finally:
            log.info("all components stopped")

    async def _keep_running(self, component: Component) -> None:
        backoff = self._backoff_factory()
        while True:
            try:
                await component.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts[component.name] += 1
                delay = backoff.next_delay()
                self.health.set(component.name, Level.RED, f"crashed: {exc!r}; restart in {delay:.1f}s")
                log.exception(
                    "component crashed",
                    extra={"component": component.name, "restart_in_s": round(delay, 2)},
                )
                await self._sleep(delay)
                continue
            log.info("component finished", extra={"component": component.name})
            return
