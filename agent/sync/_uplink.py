"""The uplink: drains the outbox streams to `.../up/{kind}` with QoS 1, at least once.

Rules it keeps (issue #7):
- Per stream, records leave in outbox order over one connection, so the broker receives
  them in order. The outbox hands out one batch per stream at a time (its FIFO rule); the
  uplink holds that batch until every record in it is acknowledged, across reconnects: after
  a dropped connection the held records are sent again first, with the same `id` and `seq`,
  before anything newer. Holding instead of releasing keeps a flapping link from using up
  the records' outbox attempts; on shutdown they are released for the next start.
- A record is acknowledged in the outbox only after the broker's successful PUBACK for the
  message that carried it. A PUBACK with a failure code (MQTT v5) releases the record with a
  delay, so the outbox retries it and dead-letters it after its `max_attempts`.
- At most `max_inflight` publishes wait for their PUBACK (Mosquitto's default window is 20).
- With a backlog, up to `batch_max` records of one stream share one message (a JSON array).
- One bad record never stops its stream (the outbox's consumer rule, `offline_queue.classify`):
  a record too big for `mqtt.max_message_bytes` is dead-lettered instead of sent (the broker
  would drop the connection on it, on every reconnect); a PUBACK failure that is permanent
  (0x99 payload format invalid) is dead at once, any other after `DEFAULT_REPEATS` refusals.

`plan_messages` and `event_id` are pure; `Uplink.run` is the asyncio shell around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.sync._client import PublishRefused, SyncClient
from agent.sync._store import assign_seqs_blocking, last_seqs_blocking, store_seqs
from base.envelope import format_ts
from base.statedb import StateDB
from base.topics import UP_KINDS, up_topic
from offline_queue import ReleasePort, classify

__all__ = ["OutboxPort", "RecordLike", "Uplink", "UplinkSettings", "event_id", "plan_messages"]

log = logging.getLogger(__name__)

# Acks are grouped into one outbox transaction until this many are confirmed or this long
# passed: each transaction is an fsync (synchronous=FULL); at ~5,000 PUBACKs/s that is about 10
# transactions/s instead of thousands. The price: a crash re-sends up to 0.1 s of confirmed
# events, which consumers drop by id. A batch that is confirmed whole is acked at once.
ACK_BATCH = 2000
ACK_COALESCE_S = 0.1


class RecordLike(Protocol):
    """What the uplink reads of an `offline_queue.Record`."""

    @property
    def id(self) -> int: ...
    @property
    def stream(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> float: ...


class OutboxPort(ReleasePort, Protocol):
    """The part of `offline_queue.Outbox` the uplink uses (the shared contract)."""

    async def claim(self, stream: str, limit: int = 100, lease: float = 30.0) -> Sequence[RecordLike]: ...
    async def ack(self, ids: Iterable[int]) -> None: ...
    async def depth(self, stream: str | None = None) -> int: ...
    async def put(
        self,
        stream: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        expires_at: float | None = None,
    ) -> int: ...


class TooLarge(Exception):
    """A record that does not fit in one MQTT message: it can never be sent."""

    permanent = True


def device_namespace(store_id: str, device_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"shopedge:{store_id}/{device_id}")


def event_id(namespace: uuid.UUID, record: RecordLike) -> str:
    """A UUID that is the same every time this record is sent (the consumer's dedupe key).

    Derived from the record rather than stored: the outbox id plus its creation time, so a
    recreated outbox that reuses ids does not reuse event ids.
    """
    return str(uuid.uuid5(namespace, f"{record.stream}:{record.id}:{record.created_at!r}"))


def plan_messages(
    records: Sequence[RecordLike],
    seqs: Mapping[int, int],
    *,
    namespace: uuid.UUID,
    batch_max: int,
) -> Iterator[tuple[list[int], bytes]]:
    """Group claimed records (one stream, oldest first) into messages of at most `batch_max`.

    Yields (record ids, payload) per message, in send order, one at a time, so the sender
    publishes the first while the rest are not yet encoded. The envelopes are built from
    values this module makes (uuid5 ids, formatted timestamps, integer seqs), so they skip
    `Envelope`'s validation; the tests check the output against the AsyncAPI schema.
    """
    if batch_max < 1:
        raise ValueError(f"batch_max must be >= 1, got {batch_max}")
    for start in range(0, len(records), batch_max):
        chunk = records[start : start + batch_max]
        bodies = [
            {
                "id": event_id(namespace, record),
                "kind": record.stream,
                "ts": format_ts(record.created_at),
                "seq": seqs[record.id],
                "data": record.payload,
            }
            for record in chunk
        ]
        body: Any = bodies[0] if len(bodies) == 1 else bodies
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        yield [record.id for record in chunk], payload


@dataclass(frozen=True, kw_only=True)
class UplinkSettings:
    store_id: str
    device_id: str
    max_inflight: int = 20
    batch_max: int = 50
    streams: tuple[str, ...] = UP_KINDS
    # Records are held (not re-claimed) across reconnects, so the lease only matters after a
    # crash: then the outbox hands them out again once it runs out.
    lease_s: float = 60.0
    claim_limit: int = 5000
    idle_poll_s: float = 0.25
    retry_refused_s: float = 30.0
    max_message_bytes: int = 256 * 1024


@dataclass
class UplinkStats:
    messages: int = 0
    acked: int = 0
    resent: int = 0
    refused: int = 0
    last_error: str = ""
    last_acked_at: float | None = None  # wall clock of the last broker-confirmed ack
    per_stream: dict[str, int] = field(default_factory=dict)


class Uplink:
    """Drains the outbox over one connection at a time; `run` ends when the connection does."""

    def __init__(
        self,
        outbox: OutboxPort,
        db: StateDB,
        settings: UplinkSettings,
        *,
        wall_clock: Callable[[], float],
        on_acked: Callable[[float], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.on_acked = on_acked
        self.db = db
        self.settings = settings
        self.wall_clock = wall_clock
        self.stats = UplinkStats()
        self.wake = asyncio.Event()
        self._namespace = device_namespace(settings.store_id, settings.device_id)
        self._topics = {s: up_topic(settings.store_id, settings.device_id, s) for s in settings.streams}
        # Claimed, not yet acknowledged: stream -> {record id: record}, oldest first.
        self._held: dict[str, dict[int, RecordLike]] = {}
        self._seqs: dict[int, int] = {}
        # Per stream, the last seq given; known after the stream's first claim in this process.
        self._last_seq: dict[str, int] = {}
        # Seq rows being written in the background; every ack waits for them (see _claim).
        self._persisting: list[asyncio.Future[None]] = []
        self._prune: dict[str, list[int]] = {}
        self._to_ack: list[int] = []
        self._refused: list[tuple[list[int], PublishRefused]] = []

    @property
    def held(self) -> int:
        return sum(len(records) for records in self._held.values())

    async def run(self, client: SyncClient) -> None:
        """Publish until cancelled or the connection fails; acknowledged records are settled."""
        window = asyncio.Semaphore(self.settings.max_inflight)
        settle = asyncio.Event()
        # Held batches from an earlier connection go out again first, before any new claim.
        resend = {stream for stream, records in self._held.items() if records}

        def on_done(ids: list[int], future: asyncio.Future[None]) -> None:
            window.release()
            if future.cancelled():
                return
            exc = future.exception()
            if exc is None:
                self._to_ack.extend(ids)
                settle.set()
            elif isinstance(exc, PublishRefused):
                self._refused.append((ids, exc))
                settle.set()

        async def settle_loop() -> None:
            while True:
                await settle.wait()
                if not self._refused and len(self._to_ack) < min(self.held, ACK_BATCH):
                    # Let more PUBACKs arrive so one outbox transaction (one fsync) acks many;
                    # never when the whole held batch is confirmed (the next claim waits on it).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(ACK_COALESCE_S):
                            while len(self._to_ack) < min(self.held, ACK_BATCH):
                                settle.clear()
                                await settle.wait()
                settle.clear()
                await self._settle()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(settle_loop(), name="shopedge.sync.settle")
                while True:
                    # Cleared before the pass, so a batch settled during it wakes the next pass.
                    self.wake.clear()
                    sent = 0
                    for stream in self.settings.streams:
                        if stream in resend:
                            # Read the held batch now, not at connect: late PUBACKs of the old
                            # connection may have settled part of it meanwhile.
                            resend.discard(stream)
                            records = list(self._held.get(stream, {}).values())
                            self.stats.resent += len(records)
                        elif self._held.get(stream):
                            continue  # its batch is in flight; the outbox would hand out nothing
                        else:
                            records = await self._claim(stream)
                        if records:
                            await self._publish(client, stream, records, window, on_done)
                            sent += len(records)
                    if not sent:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(self.settings.idle_poll_s):
                                await self.wake.wait()
        finally:
            await asyncio.sleep(0)  # let PUBACK callbacks already scheduled record their acks
            await self._settle()

    async def release_all(self) -> None:
        """Give every held record back to the outbox (shutdown), retryable at once."""
        await self._settle()
        now = self.wall_clock()
        for records in self._held.values():
            for record_id in records:
                await self.outbox.release(record_id, "sync: agent stopped before PUBACK", retry_at=now)
        self._held.clear()

    async def _claim(self, stream: str) -> list[RecordLike]:
        records = list(
            await self.outbox.claim(stream, limit=self.settings.claim_limit, lease=self.settings.lease_s)
        )
        if not records:
            return []
        self._held[stream] = {record.id: record for record in records}
        ids = [record.id for record in records]
        acked = self._prune.pop(stream, [])
        if stream not in self._last_seq:
            # First claim of the stream in this process: its head may hold records a crashed
            # run already numbered, so ask the store.
            seqs = await asyncio.to_thread(assign_seqs_blocking, self.db, stream, ids, acked=acked)
            last = await asyncio.to_thread(last_seqs_blocking, self.db)
            self._last_seq[stream] = last.get(stream, 0)
        else:
            # Every later claim holds only records never numbered (or numbered in memory, like a
            # refused one coming back), so number them here and store the numbers while the
            # first messages go out. Acks wait for that write: a record is never deleted from
            # the outbox before its seq is stored, so a crash cannot reuse a delivered seq.
            base = self._last_seq[stream]
            fresh = [rid for rid in ids if rid not in self._seqs]
            seqs = {rid: base + rank for rank, rid in enumerate(fresh, start=1)}
            self._last_seq[stream] = base + len(fresh)
            store = functools.partial(store_seqs, stream=stream, seqs=dict(seqs), acked=acked)
            self._persisting.append(asyncio.ensure_future(self.db.write(store)))
            seqs.update({rid: self._seqs[rid] for rid in ids if rid in self._seqs})
        self._seqs.update(seqs)
        self.stats.per_stream[stream] = self.stats.per_stream.get(stream, 0) + len(records)
        return records

    async def _publish(
        self,
        client: SyncClient,
        stream: str,
        records: list[RecordLike],
        window: asyncio.Semaphore,
        on_done: Callable[[list[int], asyncio.Future[None]], None],
    ) -> None:
        missing = [record.id for record in records if record.id not in self._seqs]
        if missing:
            # Held records whose numbering was interrupted (the link dropped during the claim):
            # the store returns the numbers already given, or gives the next ones.
            self._seqs.update(await asyncio.to_thread(assign_seqs_blocking, self.db, stream, missing))
        batch_max = self.settings.batch_max if len(records) > 1 else 1
        topic = self._topics[stream]
        limit = self.settings.max_message_bytes
        for message_ids, payload in plan_messages(
            records, self._seqs, namespace=self._namespace, batch_max=batch_max
        ):
            if len(payload) <= limit:
                await self._send(client, topic, message_ids, payload, window, on_done)
                continue
            # Too big for one message: alone if it was a batch, and a record too big even
            # alone is dead (the broker would hang up on it on every reconnect, forever).
            by_id = {record.id: record for record in records}
            alone = [by_id[record_id] for record_id in message_ids]
            for ids, single in plan_messages(alone, self._seqs, namespace=self._namespace, batch_max=1):
                if len(single) <= limit:
                    await self._send(client, topic, ids, single, window, on_done)
                else:
                    await self._bury_too_large(ids[0], len(single))

    async def _send(
        self,
        client: SyncClient,
        topic: str,
        message_ids: list[int],
        payload: bytes,
        window: asyncio.Semaphore,
        on_done: Callable[[list[int], asyncio.Future[None]], None],
    ) -> None:
        await window.acquire()
        try:
            future = client.publish_qos1(topic, payload)
        except BaseException:
            window.release()
            raise
        future.add_done_callback(functools.partial(on_done, message_ids))
        self.stats.messages += 1

    async def _bury_too_large(self, record_id: int, size: int) -> None:
        error = TooLarge(f"{size} bytes as an MQTT message, over mqtt.max_message_bytes")
        self.stats.last_error = str(error)
        log.error("uplink record too large: dead-lettered", extra={"record_id": record_id, "bytes": size})
        await self.outbox.release(record_id, f"sync: {error}", permanent=True)
        self._forget(record_id)

    def _forget(self, record_id: int, *, keep_seq: bool = False) -> None:
        if not keep_seq:
            self._seqs.pop(record_id, None)
        for stream, records in list(self._held.items()):
            if records.pop(record_id, None) is not None:
                if not records:
                    del self._held[stream]
                    self.wake.set()
                return

    async def _settle(self) -> None:
        """Ack what the broker confirmed; put refused records back with a delay."""
        while self._persisting:
            # Shielded and popped only when done: a cancelled settle waits again next time.
            await asyncio.shield(self._persisting[0])
            self._persisting.pop(0)
        if self._to_ack:
            batch = list(self._to_ack)
            await self.outbox.ack(batch)  # idempotent: a cancelled ack is simply repeated
            del self._to_ack[: len(batch)]
            self.stats.acked += len(batch)
            self.stats.last_acked_at = self.wall_clock()
            if self.on_acked is not None:
                self.on_acked(self.stats.last_acked_at)
            for record_id in batch:
                stream = next((s for s, held in self._held.items() if record_id in held), None)
                if stream is not None:
                    self._prune.setdefault(stream, []).append(record_id)
                self._forget(record_id)
        while self._refused:
            ids, error = self._refused[0]
            self.stats.refused += len(ids)
            self.stats.last_error = str(error)
            log.warning("broker refused a publish", extra={"records": ids, "error": str(error)})
            retry_at = self.wall_clock() + self.settings.retry_refused_s
            for record_id in ids:
                held = next((h[record_id] for h in self._held.values() if record_id in h), None)
                failure = classify(error, getattr(held, "attempts", 1))
                await self.outbox.release(
                    record_id, f"sync: {error}", retry_at=retry_at, permanent=failure.dead
                )
                self._forget(record_id, keep_seq=not failure.dead)  # a retried one keeps its number
            self._refused.pop(0)
