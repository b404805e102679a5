"""The relay's publisher loop: from its durable outbox to the broker, each event once.

The webhook handler only stores accepted events (`offline_queue.Outbox`, stream
`line_event`, dedupe key = `webhookEventId`) and answers LINE; this loop claims a bounded
batch (at most `max_inflight`, the MQTT client's in-flight window, so a 500-event webhook never
queues more publishes than the broker acknowledges at once), publishes each with QoS 1, acks
the ones the broker PUBACKed and gives the rest back with a short retry. It claims only while
connected, so a broker outage is a wait, not a string of failed attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from offline_queue import FailureKind, Outbox, Record, classify

__all__ = ["RELAY_STREAM", "OutboxForwarder", "relay_record"]

log = logging.getLogger(__name__)

RELAY_STREAM = "line_event"
# Idle poll when nothing woke the loop (a second relay sharing the file, a retry coming due).
IDLE_POLL_S = 1.0
# After a publish failed while connected, the record waits this long before its next try.
RETRY_AFTER_S = 1.0


class Publisher(Protocol):
    """What the forwarder needs of `cloud.relay.MqttPublisher`."""

    connected: asyncio.Event

    async def publish(self, topic: str, payload: bytes, *, timeout_s: float) -> None: ...


def relay_record(topic: str, message: bytes) -> dict[str, Any]:
    """The outbox payload of one accepted event: where it goes and the exact bytes to send."""
    return {"topic": topic, "message": message.decode("utf-8")}


class OutboxForwarder:
    """Publishes the relay outbox's records in order, `batch` at a time; `wake()` after a put."""

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        batch: int,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.batch = batch
        self.timeout_s = timeout_s
        self.clock = clock
        self.published = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Forward until cancelled."""
        lease = self.timeout_s * 2 + 5.0
        while True:
            await self.publisher.connected.wait()
            self._wake.clear()
            records = await self.outbox.claim(RELAY_STREAM, limit=self.batch, lease=lease)
            if not records:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                continue
            results = await asyncio.gather(*(self._publish(r) for r in records), return_exceptions=True)
            done = [r.id for r, error in zip(records, results, strict=True) if error is None]
            await self.outbox.ack(done)
            self.published += len(done)
            for record, error in zip(records, results, strict=True):
                if isinstance(error, asyncio.CancelledError):
                    raise error
                if error is not None:
                    # The consumer rule (`offline_queue.classify`): a broken record (KeyError,
                    # UnicodeEncodeError, TypeError...) is dead at once, a broker that did not
                    # answer is retried however long, anything else dies when it repeats.
                    failure = classify(error, record.attempts)
                    await self.outbox.release(
                        record.id,
                        str(error) or type(error).__name__,
                        retry_at=self.clock() + RETRY_AFTER_S,
                        permanent=failure.dead,
                        transient=failure.kind is FailureKind.TRANSIENT,
                    )
            if len(done) < len(records):
                log.warning("relay could not publish", extra={"failed": len(records) - len(done)})

    async def _publish(self, record: Record) -> None:
        topic, message = record.payload["topic"], record.payload["message"]
        await self.publisher.publish(str(topic), str(message).encode("utf-8"), timeout_s=self.timeout_s)
        log.info("line event relayed", extra={"topic": topic})
