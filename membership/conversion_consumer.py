"""The `conversion` component: feeds relayed LINE events to `membership.conversion.handle_line_event`
under the outbox's consumer rule (`offline_queue.settle_failure`), so one bad event never stops
the binding messages behind it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from base.health import Level
from membership.context import MembershipContext
from membership.conversion import (
    LINE_INBOX_STREAM,
    ConversionResult,
    ConversionStatus,
    after_conversion,
    handle_line_event,
)
from offline_queue import DEFAULT_REPEATS, FailureKind, describe, settle_failure

__all__ = ["DURABLE_SWEEP_S", "ConversionConsumer"]

log = logging.getLogger("membership.conversion")

# How often the consumer looks at the durable inbox when nothing arrives from memory.
DURABLE_SWEEP_S = 1.0


class ConversionConsumer:
    """Feeds the `line_event` envelopes the sync downlink queues (`ctx.services["downlink"]`,
    `await inbox.get()`) to `handle_line_event`, one at a time.

    Sync keeps every relayed event durably in `line_inbox` before it wakes this consumer, so
    the durable copy is the one that counts: the memory copy is handled at once for speed, and
    if that fails the sweep takes the durable copy under the outbox's consumer rule
    (`offline_queue.settle_failure`): a transient failure (database busy, outbox not writable)
    retries with backoff, health red meanwhile; a record that fails for good (an absurd LINE
    timestamp) or the same way `DEFAULT_REPEATS` times becomes a dead letter, health amber,
    and later binding messages go on (`shopedge queue dead-letters` shows it).
    """

    name = "conversion"

    def __init__(self, ctx: MembershipContext, *, max_attempts: int = DEFAULT_REPEATS) -> None:
        self.ctx = ctx
        self.max_attempts = max_attempts
        self.counts: Counter[str] = Counter()
        # Envelope ids handled in this process (from memory or the durable inbox): each once.
        self._handled: dict[str, None] = {}
        # Envelope ids whose last attempt failed: a DUPLICATE on the next try is our own commit.
        self._failed: set[str] = set()
        self._dead = 0
        self._last_dead = ""

    async def run(self) -> None:
        inbox = self.ctx.services.get("downlink")
        if inbox is None:
            self.ctx.health.set(self.name, Level.AMBER, "no MQTT downlink: binding messages cannot arrive")
            await asyncio.Event().wait()
            return
        await self._count_old_dead_letters()
        self._report()
        while True:
            envelope = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DURABLE_SWEEP_S):
                    envelope = await inbox.get()
            if envelope is not None:
                envelope_id = str(envelope.id if hasattr(envelope, "id") else envelope.get("id"))
                if envelope_id not in self._handled:  # the sweep may have taken its durable copy
                    data = envelope.data if hasattr(envelope, "data") else envelope.get("data", {})
                    try:
                        await self.handle(dict(data) if isinstance(data, Mapping) else {}, envelope_id)
                    except Exception as exc:  # its durable copy is retried or buried by the sweep
                        self._failed.add(envelope_id)
                        log.warning(
                            "binding message failed; its durable copy is retried",
                            extra={"error": describe(exc)},
                        )
            await self.sweep_durable()

    def _remember(self, envelope_id: str) -> None:
        self._failed.discard(envelope_id)
        self._handled[envelope_id] = None
        while len(self._handled) > 10_000:
            del self._handled[next(iter(self._handled))]

    async def _count_old_dead_letters(self) -> None:
        outbox = self.ctx.services.get("outbox")
        if outbox is not None and hasattr(outbox, "dead_letters"):
            letters = await outbox.dead_letters(LINE_INBOX_STREAM)
            self._dead = len(letters)
            self._last_dead = letters[-1].reason if letters else ""

    def _report(self) -> None:
        detail = ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items()))
        if self._dead:
            dead = (
                f"{self._dead} binding message(s) dead-lettered (last: {self._last_dead}); "
                "see `shopedge queue dead-letters --stream line_inbox`"
            )
            self.ctx.health.set(self.name, Level.AMBER, f"{detail}; {dead}" if detail else dead)
        else:
            self.ctx.health.set(self.name, Level.GREEN, detail or "waiting for binding messages")

    async def sweep_durable(self) -> int:
        """Handle and ack the durable copies of relayed events (`line_inbox`, written by sync).

        Normally each was just handled from memory and is only acked; after a crash or restart
        it is the only copy, and this is where its conversion and coupon happen. A copy whose
        handling fails is released under the consumer rule (retried or dead-lettered), and the
        sweep stops there: the outbox hands out nothing behind a record waiting for its retry.
        """
        outbox = self.ctx.services.get("outbox")
        if outbox is None:
            return 0
        records = await outbox.claim(LINE_INBOX_STREAM, limit=50, lease=120.0)
        done: list[int] = []
        for index, record in enumerate(records):
            envelope_id = str(record.payload.get("id"))
            if envelope_id not in self._handled:  # else handled from memory: only needs its ack
                data = record.payload.get("data")
                try:
                    await self.handle(
                        dict(data) if isinstance(data, Mapping) else {},
                        envelope_id,
                        retried=record.attempts > 1,
                    )
                except Exception as exc:
                    await outbox.ack(done)
                    await self._failed_record(outbox, record, exc)
                    for later in records[index + 1 :]:  # keep their place behind the failed one
                        await outbox.release(
                            later.id,
                            "waiting behind a failed binding message",
                            retry_at=self.ctx.wall_clock(),
                        )
                    return index + 1
            done.append(record.id)
        if done:
            await outbox.ack(done)
        return len(records)

    async def _failed_record(self, outbox: Any, record: Any, exc: Exception) -> None:
        envelope_id = str(record.payload.get("id"))
        failure = await settle_failure(
            outbox, record.id, record.attempts, exc, max_attempts=self.max_attempts
        )
        if failure.dead:
            self._remember(envelope_id)
            self._dead += 1
            self._last_dead = failure.reason
            self.counts["dead_lettered"] += 1
            log.error(
                "binding message dead-lettered", extra={"envelope_id": envelope_id, "reason": failure.reason}
            )
            self._report()
            return
        self._failed.add(envelope_id)
        level = Level.RED if failure.kind is FailureKind.TRANSIENT else Level.AMBER
        self.ctx.health.set(
            self.name,
            level,
            f"cannot record conversions (attempt {record.attempts}): {failure.reason}; retrying",
        )
        log.warning(
            "conversion not recorded, retrying", extra={"error": failure.reason, "attempt": record.attempts}
        )

    async def handle(
        self, envelope_data: dict[str, Any], envelope_id: str | None = None, *, retried: bool = False
    ) -> ConversionResult:
        """One attempt at one relayed event. Raises what `handle_line_event` raises: the caller
        (memory path or durable sweep) applies the consumer rule."""
        greeter = self.ctx.services.get("greeter")
        if greeter is not None and await greeter.handle(envelope_data) is not None:
            # a `beacon` event: the greeting's (counted in its own health), not a conversion
            if envelope_id is not None:
                self._remember(envelope_id)
            return ConversionResult(status=ConversionStatus.IGNORED, reason="beacon_event")
        result = await handle_line_event(self.ctx, envelope_data)
        earlier_failure = retried or (envelope_id is not None and envelope_id in self._failed)
        if earlier_failure and result.status is ConversionStatus.DUPLICATE:
            # our own failed attempt had committed it: this event is the recording
            result = replace(result, status=ConversionStatus.RECORDED, reason="completed_on_retry")
        if envelope_id is not None:
            self._remember(envelope_id)
        self.counts[result.status.value] += 1
        self._report()
        if result.status is ConversionStatus.RECORDED and result.conversion is not None:
            await after_conversion(self.ctx, result.conversion)
        return result
