"""The ingest worker (`shopedge cloud ingest`): broker -> batches -> database -> acks.

One asyncio loop; paho's network thread feeds it (see `_mqtt`), the database write runs in a
worker thread (`write_batch_blocking`). Per batch: take up to `batch_max` messages (waiting
at most `batch_wait_ms` for the batch to fill), write them in one transaction, and only
after the commit PUBACK them, in arrival order. Faults:
- a malformed message is quarantined inside the batch; it never stops the worker;
- the database unreachable: nothing is acked, the same batch is retried with backoff and the
  broker holds the rest (Receive Maximum); when the database returns, nothing is lost;
- a message the database itself refuses (a poison row) is found by writing the batch one
  message at a time and quarantined with the database's reason, so one bad row cannot stall
  the group;
- a crash or SIGKILL between receive and commit: the broker sends the unacked messages again
  when the worker (same client id) reconnects; the envelope id dedupes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from base.backoff import Backoff
from cloud.fleet_config import CloudConfig
from cloud.ingest._decode import Quarantined, Read, read_message
from cloud.ingest._mqtt import IngestSession, Received, thread_safe
from cloud.ingest._store import BatchOutcome, write_batch_blocking

__all__ = ["IngestStats", "IngestWorker"]

log = logging.getLogger(__name__)
STATS_EVERY_S = 10.0


@dataclass
class IngestStats:
    received: int = 0
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    statuses: int = 0
    acked: int = 0
    ack_dropped: int = 0
    db_errors: int = 0
    connected: bool = False
    state: str = "starting"
    last_commit_at: float | None = None
    history: list[str] = field(default_factory=list)

    def add(self, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.stored += outcome.stored
        self.duplicates += outcome.duplicates
        self.quarantined += outcome.quarantined
        self.statuses += outcome.statuses

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "history"}


def _transient(exc: BaseException) -> bool:
    """A database error worth waiting out (connection, timeout, lock), as opposed to a row the
    database refuses."""
    if isinstance(exc, OperationalError | InterfaceError | TimeoutError | ConnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class IngestWorker:
    def __init__(
        self,
        config: CloudConfig,
        engine: Engine,
        *,
        client_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.engine = engine
        self.client_id = client_id
        self.clock = clock
        cloud = config.cloud
        self.backoff = Backoff(base=cloud.db_retry_min_s, cap=cloud.db_retry_max_s)
        self.stats = IngestStats()
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self.session: IngestSession | None = None
        self._stopping = False

    def _state(self, up: bool, detail: str) -> None:
        self.stats.connected = up
        log.info("mqtt %s", detail)

    def _state_threadsafe(self, loop: asyncio.AbstractEventLoop, up: bool, detail: str) -> None:
        loop.call_soon_threadsafe(self._state, up, detail)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        cloud = self.config.cloud
        self.session = IngestSession(
            self.config.mqtt,
            client_id=self.client_id,
            group=cloud.group,
            receive_max=cloud.receive_max,
            on_message=thread_safe(loop, self._queue),
            on_state=lambda up, detail: self._state_threadsafe(loop, up, detail),
        )
        self.session.start()
        log.info(
            "ingest worker started",
            extra={"client_id": self.client_id, "group": cloud.group, "broker": self.config.mqtt.host},
        )
        next_stats = time.monotonic() + STATS_EVERY_S
        pending: asyncio.Future[None] | None = None
        try:
            while True:
                batch = await self._next_batch()
                # Decoded while the previous batch is still committing (its database round
                # trips release the GIL); commits, and so acks, stay in arrival order.
                reads = [read_message(m.topic, m.payload) for m in batch]
                if pending is not None:
                    await asyncio.shield(pending)
                pending = asyncio.ensure_future(self._commit_and_ack(batch, reads))
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + STATS_EVERY_S
                    log.info("ingest stats", extra=self.stats.as_dict())
        except asyncio.CancelledError:
            # A stop request waits for the commit in flight and its acks, never half of one.
            self._stopping = True
            if pending is not None:
                await pending
            raise
        finally:
            self.session.stop()
            log.info("ingest worker stopped", extra=self.stats.as_dict())

    async def _next_batch(self) -> list[Received]:
        cloud = self.config.cloud
        first = await self._queue.get()
        batch = [first]
        deadline = time.monotonic() + cloud.batch_wait_ms / 1000
        while len(batch) < cloud.batch_max:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        self.stats.received += len(batch)
        log.debug("batch taken", extra={"messages": len(batch), "received": self.stats.received})
        return batch

    async def _commit_and_ack(self, batch: Sequence[Received], reads: Sequence[Read]) -> None:
        while True:
            try:
                outcome = await asyncio.to_thread(self._write_blocking, batch, reads)
                break
            except SQLAlchemyError as exc:
                self.stats.db_errors += 1
                if self._stopping:
                    log.warning("stopping with the database unavailable; the broker keeps the batch")
                    return
                delay = self.backoff.next_delay()
                self.stats.state = f"database unavailable: {type(exc).__name__}; retrying in {delay:.1f} s"
                log.warning(
                    "database write failed; nothing acked, retrying",
                    extra={"error": str(exc).splitlines()[0][:300], "retry_in_s": round(delay, 2)},
                )
                await asyncio.sleep(delay)
        self.backoff.reset()
        self.stats.add(outcome)
        self.stats.last_commit_at = self.clock()
        self.stats.state = "ok"
        assert self.session is not None
        acked = self.session.ack(batch)
        self.stats.acked += acked
        self.stats.ack_dropped += len(batch) - acked

    def _write_blocking(self, batch: Sequence[Received], reads: Sequence[Read]) -> BatchOutcome:
        now = self.clock()
        try:
            return write_batch_blocking(self.engine, reads, now)
        except SQLAlchemyError as exc:
            if _transient(exc):
                raise
            log.warning(
                "database refused the batch; writing it one message at a time",
                extra={"error": str(exc).splitlines()[0][:300]},
            )
        outcomes = []
        for message, read in zip(batch, reads, strict=True):
            try:
                outcomes.append(write_batch_blocking(self.engine, [read], now))
            except SQLAlchemyError as exc:
                if _transient(exc):
                    raise
                reason = f"database refused: {str(getattr(exc, 'orig', exc)).splitlines()[0][:500]}"
                held = Quarantined(topic=message.topic, payload=message.payload, reason=reason)
                outcomes.append(write_batch_blocking(self.engine, [Read(quarantined=held)], now))
        return BatchOutcome(
            messages=sum(o.messages for o in outcomes),
            stored=sum(o.stored for o in outcomes),
            duplicates=sum(o.duplicates for o in outcomes),
            quarantined=sum(o.quarantined for o in outcomes),
            statuses=sum(o.statuses for o in outcomes),
        )


async def run_worker(config: CloudConfig, engine: Engine, *, client_id: str) -> IngestStats:
    """Run until cancelled; returns the final stats."""
    worker = IngestWorker(config, engine, client_id=client_id)
    with contextlib.suppress(asyncio.CancelledError):
        await worker.run()
    return worker.stats
