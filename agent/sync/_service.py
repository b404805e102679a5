"""The sync component: one MQTT session at a time, reconnecting with backoff, forever.

Per connection: client id `mqtt.client_id` (default `shopedge-{store}-{device}`, unique on a
broker several stores share); a persistent session (MQTT v5 clean start off with a
session expiry, or v3.1.1 clean session off) so downlink messages queued while the device was
away arrive after it reconnects; a retained `online` status on connect and a retained
`offline` last will (also published on a clean shutdown, when the broker sends no will).
Then the uplink, the downlink reader and a disconnect watcher run together until the
connection ends. aiomqtt 2.x does not reconnect by itself: `run` does, with the agent's
jittered `Backoff`, and health is amber while disconnected. With `protocol = "auto"` a broker
that refuses MQTT 5 (NATS 2.9) is retried at once with 3.1.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiomqtt

from agent import __version__
from agent.config import ShopEdgeConfig
from agent.context import AgentContext
from agent.live_config import LiveConfig, live_config
from agent.ops_http import ops_facts
from agent.sync._client import (
    AuthRefused,
    SyncClient,
    SyncConnectionError,
    UnsupportedProtocol,
    Will,
    client_options,
    map_errors,
)
from agent.sync._downlink import LIVE_KEYS, Decision, SeenIds, apply_live_config, decide
from agent.sync._store import (
    last_seqs_blocking,
    live_config_version_blocking,
    load_live_config_blocking,
    save_live_config_blocking,
)
from agent.sync._uplink import OutboxPort, Uplink, UplinkSettings
from base.backoff import Backoff
from base.envelope import Envelope, format_ts
from base.health import Level
from base.mqtt import client_id_for
from base.topics import down_filter, status_topic, store_down_filter
from membership.conversion import LINE_INBOX_STREAM
from offline_queue import Outbox

__all__ = ["DownlinkInbox", "LiveConfig", "SyncService", "status_payload"]

log = logging.getLogger(__name__)
# The uplink's poll when the outbox wakes it for every stored record: only what time alone makes
# claimable again waits this long (a refused record's retry is 30 s, a lease 60 s).
STORED_WAKE_POLL_S = 2.0


def status_payload(
    config: ShopEdgeConfig, state: Literal["online", "offline"], protocol: str, now: float
) -> bytes:
    body = {
        "state": state,
        "store_id": config.device.store_id,
        "device_id": config.device.device_id,
        "agent_version": __version__,
        "protocol": protocol,
        "ts": format_ts(now),
    }
    return json.dumps(body, separators=(",", ":")).encode()


# LINE_INBOX_STREAM (owned by its consumer, membership.conversion) is the private outbox stream
# (never uplinked) holding every relayed LINE event until the conversion consumer has handled
# it. aiomqtt 2 acknowledges a QoS 1 message as it arrives, so without it a crash between the
# PUBACK and the conversion would lose the shopper's binding message.


async def accept_line_event(outbox: OutboxPort, inbox: DownlinkInbox, envelope: Envelope) -> None:
    """Keep a relayed LINE event durably (deduped by envelope id), then wake the consumer."""
    record = {"id": envelope.id, "kind": envelope.kind, "ts": envelope.ts, "seq": envelope.seq}
    await outbox.put(
        LINE_INBOX_STREAM, {**record, "data": dict(envelope.data)}, dedupe_key=f"line_event:{envelope.id}"
    )
    inbox.put(envelope)


class DownlinkInbox:
    """LINE events relayed to this device, for the conversion capability to consume.

    `ctx.services["downlink"]`; `await inbox.get()` returns the next `line_event` envelope.
    Bounded: when nobody consumes, the oldest waiting events are dropped and counted.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def put(self, envelope: Envelope) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(envelope)

    async def get(self) -> Envelope:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()


@dataclass
class DownlinkStats:
    received: int = 0
    malformed: int = 0
    unknown: int = 0
    duplicates: int = 0
    config_applied: int = 0
    config_refused: int = 0
    commands: int = 0
    line_events: int = 0


class SyncService:
    """The `sync` component (see the module docstring)."""

    name = "sync"

    def __init__(
        self,
        ctx: AgentContext,
        *,
        outbox: OutboxPort | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.ctx = ctx
        self.config = ctx.config
        mqtt = ctx.config.mqtt
        self._outbox = outbox
        self.backoff = backoff or Backoff(base=mqtt.reconnect_min_s, cap=mqtt.reconnect_max_s)
        self._sleep = sleep
        self.protocol: Literal["5", "3.1.1"] = "3.1.1" if mqtt.protocol == "3.1.1" else "5"
        self.live: LiveConfig = live_config(ctx.services, ctx.config)
        self.inbox = ctx.services.setdefault("downlink", DownlinkInbox())
        self.seen = SeenIds()
        self.down = DownlinkStats()
        self.connected = asyncio.Event()
        self.connections = 0
        self.uplink: Uplink | None = None
        self._client: SyncClient | None = None
        self._live_loaded = False

    @property
    def outbox(self) -> OutboxPort:
        outbox = self._outbox or self.ctx.services.get("outbox")
        if outbox is None:
            raise RuntimeError("sync needs the outbox service (ctx.services['outbox']) and it is not there")
        return outbox  # type: ignore[no-any-return]

    def _health(self, level: Level, detail: str) -> None:
        self.ctx.health.set(self.name, level, detail)

    async def run(self) -> None:
        cfg = self.config.mqtt
        if not cfg.enabled:
            self._health(Level.GREEN, "disabled in config ([mqtt] enabled = false)")
            return
        await self._load_live_config()
        settings = UplinkSettings(
            store_id=self.config.device.store_id,
            device_id=self.config.device.device_id,
            max_inflight=cfg.max_inflight,
            batch_max=self.live.config.mqtt.batch_max,
            max_message_bytes=cfg.max_message_bytes,
        )
        outbox = self.outbox if isinstance(self.outbox, Outbox) else None
        if outbox is not None:
            # Woken by every stored record, the uplink polls only for what time alone makes
            # claimable again (a retry that is due, a lease that ran out).
            settings = replace(settings, idle_poll_s=STORED_WAKE_POLL_S)
        facts = ops_facts(self.ctx)
        self.uplink = Uplink(
            self.outbox,
            self.ctx.db,
            settings,
            wall_clock=self.ctx.wall_clock,
            on_acked=lambda at: facts.record_sync(at=at),
        )
        unsubscribe = outbox.on_stored(self.uplink.wake.set) if outbox is not None else None
        self.live.follow("sync", ["mqtt.batch_max"], self._follow_batch_max)
        self._health(Level.AMBER, f"connecting to {cfg.host}:{cfg.port}")
        try:
            while True:
                try:
                    await self._session()
                except UnsupportedProtocol as exc:
                    if cfg.protocol == "auto" and self.protocol == "5":
                        log.info("broker refused MQTT 5; using 3.1.1", extra={"error": str(exc)})
                        self.protocol = "3.1.1"
                        continue
                    self._disconnected(exc)
                except SyncConnectionError as exc:
                    self._disconnected(exc)
                await self._report_pending()
                await self._sleep(self.backoff.next_delay())
        finally:
            if unsubscribe is not None:
                unsubscribe()
            await self.uplink.release_all()

    def _disconnected(self, exc: Exception) -> None:
        self.connected.clear()
        delay_hint = f"retrying with backoff (attempt {self.backoff.attempts + 1})"
        if isinstance(exc, AuthRefused):
            # Retrying will not fix credentials; red so a technician looks at [mqtt].
            self._health(
                Level.RED, f"broker refused our credentials ({exc}); check mqtt.username/password/cert"
            )
        else:
            self._health(Level.AMBER, f"disconnected: {exc}; {delay_hint}; events wait in the outbox")
        log.warning("mqtt disconnected", extra={"error": str(exc), "attempt": self.backoff.attempts + 1})

    def _client_for(self, protocol: Literal["5", "3.1.1"]) -> SyncClient:
        device = self.config.device
        will = Will(
            topic=status_topic(device.store_id, device.device_id),
            payload=status_payload(self.config, "offline", protocol, self.ctx.wall_clock()),
        )
        return SyncClient(
            **client_options(
                self.config.mqtt,
                client_id=client_id_for(self.config.mqtt, device.store_id, device.device_id),
                protocol=protocol,
                will=will,
                connect_timeout=self.config.timeouts.mqtt_connect,
            )
        )

    async def _session(self) -> None:
        client = self._client_for(self.protocol)
        device = self.config.device
        cancels = _cancel_requests()
        timeout = self.config.timeouts.mqtt_publish
        with map_errors():
            async with client:
                self._client = client
                try:
                    _raise_if_cancelled_since(cancels)
                    self.connections += 1
                    self.backoff.reset()
                    status = status_payload(self.config, "online", self.protocol, self.ctx.wall_clock())
                    async with asyncio.timeout(timeout):
                        await client.publish_qos1(
                            status_topic(device.store_id, device.device_id), status, retain=True
                        )
                    await client.subscribe(
                        down_filter(device.store_id, device.device_id), qos=1, timeout=timeout
                    )
                    # What concerns the whole store (a beacon mapped to the store only).
                    await client.subscribe(store_down_filter(device.store_id), qos=1, timeout=timeout)
                    _raise_if_cancelled_since(cancels)
                    self.connected.set()
                    display = self.ctx.services.get("display")
                    if display is not None:
                        display.set_pending_sync(0)
                    cfg = self.config.mqtt
                    self._health(Level.GREEN, f"connected to {cfg.host}:{cfg.port} (MQTT {self.protocol})")
                    log.info("mqtt connected", extra={"host": cfg.host, "protocol": self.protocol})
                    await self._connected_loops(client)
                except asyncio.CancelledError:
                    await self._goodbye(client)
                    raise
                except TimeoutError:
                    raise SyncConnectionError("broker did not acknowledge in time") from None
                finally:
                    self._client = None
                    self.connected.clear()

    async def _connected_loops(self, client: SyncClient) -> None:
        assert self.uplink is not None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.uplink.run(client), name="shopedge.sync.uplink")
                group.create_task(self._downlink(client), name="shopedge.sync.downlink")
                group.create_task(client.wait_disconnected(), name="shopedge.sync.watch")
        except* (SyncConnectionError, aiomqtt.MqttError) as group_exc:
            first = group_exc.exceptions[0]
            raise SyncConnectionError(str(first)) from first

    async def _goodbye(self, client: SyncClient) -> None:
        """On a clean shutdown the broker sends no will: say offline ourselves."""
        device = self.config.device
        payload = status_payload(self.config, "offline", self.protocol, self.ctx.wall_clock())
        try:
            async with asyncio.timeout(2.0):
                await client.publish_qos1(
                    status_topic(device.store_id, device.device_id), payload, retain=True
                )
        except (TimeoutError, SyncConnectionError):
            log.info("could not publish offline status on shutdown; the broker keeps the will")

    # ------------------------------------------------------------------ downlink

    async def _downlink(self, client: SyncClient) -> None:
        device = self.config.device
        with map_errors():
            async for message in client.messages:
                self.down.received += 1
                payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
                for decision in decide(
                    str(message.topic),
                    bytes(payload),
                    store_id=device.store_id,
                    device_id=device.device_id,
                    seen=self.seen,
                ):
                    await self._perform(decision)

    async def _perform(self, decision: Decision) -> None:
        envelope = decision.envelope
        if decision.action == "drop_malformed":
            self.down.malformed += 1
            log.warning("malformed downlink dropped", extra={"reason": decision.reason})
        elif decision.action == "ignore_unknown":
            self.down.unknown += 1
            log.info("downlink ignored", extra={"reason": decision.reason})
            if envelope is not None and decision.command:
                await self._reply(envelope, decision.command, ok=False, detail=decision.reason)
        elif decision.action == "ignore_duplicate":
            self.down.duplicates += 1
        elif decision.action == "line_event" and envelope is not None:
            self.down.line_events += 1
            await accept_line_event(self.outbox, self.inbox, envelope)
        elif decision.action == "config" and envelope is not None:
            await self._apply_config(envelope, dict(decision.changes))
        elif decision.action == "command" and envelope is not None:
            self.down.commands += 1
            await self._command(envelope, decision.command)

    async def _apply_config(self, envelope: Envelope, changes: dict[str, Any]) -> None:
        """Apply a live change only if every reader of each key follows it; the reply carries
        the config `version` and the `effective` value of every live key either way, so the
        cloud can compare what it wants with what the device runs."""
        new, problems = apply_live_config(self.live.config, changes, following=self.live.following())
        if new is None:
            self.down.config_refused += 1
            detail = "; ".join(f"{key}: {why}" for key, why in sorted(problems.items()))
            log.warning("live config refused", extra={"problems": detail})
            await self._reply(envelope, "config", ok=False, detail=detail, result={"refused": problems})
            return
        version = self.live.version + 1
        await asyncio.to_thread(save_live_config_blocking, self.ctx.db, changes, envelope.id, version=version)
        self.live.update(new, changes, version=version)
        self.down.config_applied += 1
        log.info("live config applied", extra={"keys": sorted(changes), "version": version})
        result = {"set": changes, "effective": effective_values(new, changes), "agent_version": __version__}
        await self._reply(envelope, "config", ok=True, detail="applied", result=result)

    def _follow_batch_max(self, config: ShopEdgeConfig) -> None:
        if self.uplink is not None and self.uplink.settings.batch_max != config.mqtt.batch_max:
            self.uplink.settings = replace(self.uplink.settings, batch_max=config.mqtt.batch_max)

    async def _load_live_config(self) -> None:
        if self._live_loaded:
            return
        self._live_loaded = True
        stored = await asyncio.to_thread(load_live_config_blocking, self.ctx.db)
        version = await asyncio.to_thread(live_config_version_blocking, self.ctx.db)
        dropped = sorted(set(stored) - set(LIVE_KEYS))
        if dropped:  # set live by an older agent that let them be: the config file rules them now
            log.warning("stored live keys no longer live; ignored", extra={"keys": dropped})
            stored = {key: value for key, value in stored.items() if key in LIVE_KEYS}
        if not stored:
            self.live.version = version
            return
        new, problems = apply_live_config(self.live.config, stored)
        if new is None:
            log.warning("stored live config no longer valid; ignored", extra={"problems": problems})
            self.live.version = version
            return
        self.live.update(new, stored, version=version)

    async def _command(self, envelope: Envelope, name: str) -> None:
        if name == "ping":
            depth = await self.outbox.depth()
            await self._reply(
                envelope,
                name,
                ok=True,
                detail="pong",
                result={"agent_version": __version__, "outbox_depth": depth},
            )
        elif name == "resync":
            result = await self._resync()
            await self._reply(
                envelope, name, ok=True, detail="status republished, streams woken", result=result
            )
        elif name == "rotate_logs":
            count = reopen_log_files()
            await self._reply(
                envelope, name, ok=True, detail=f"reopened {count} log file(s)", result={"files": count}
            )

    async def _resync(self) -> dict[str, Any]:
        client = self._client
        device = self.config.device
        if client is not None:
            status = status_payload(self.config, "online", self.protocol, self.ctx.wall_clock())
            client.publish_qos1(status_topic(device.store_id, device.device_id), status, retain=True)
        if self.uplink is not None:
            self.uplink.wake.set()
        last = await asyncio.to_thread(last_seqs_blocking, self.ctx.db)
        streams = self.uplink.settings.streams if self.uplink else ()
        depths = {stream: await self.outbox.depth(stream) for stream in streams}
        return {"last_seq": last, "depth": depths}

    async def _reply(
        self, envelope: Envelope, command: str, *, ok: bool, detail: str, result: dict[str, Any] | None = None
    ) -> None:
        """Answer on `up/reply` through the outbox, so the answer survives a disconnect too."""
        body: dict[str, Any] = {"request_id": envelope.id, "command": command, "ok": ok, "detail": detail}
        if result is not None:
            body["result"] = result
        if command == "config":
            body["version"] = self.live.version
            body["effective"] = self.live.effective(LIVE_KEYS)
        await self.outbox.put("reply", body, dedupe_key=f"reply:{envelope.id}")

    async def _report_pending(self) -> None:
        """Tell the customer display how many events wait for the network (its offline banner)."""
        display = self.ctx.services.get("display")
        if display is not None:
            display.set_pending_sync(await self.outbox.depth())


def effective_values(config: ShopEdgeConfig, keys: Any) -> dict[str, Any]:
    """What the device now runs with for each `section.key` (the cloud's `reported` values)."""
    out: dict[str, Any] = {}
    for key in keys:
        section, _, name = str(key).partition(".")
        value = getattr(getattr(config, section, None), name, None)
        out[str(key)] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
    return out


def _cancel_requests() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _raise_if_cancelled_since(before: int) -> None:
    """Re-raise a cancellation that aiomqtt's `asyncio.wait_for` swallowed.

    On Python 3.11, wait_for returns normally when its future completes in the same loop
    iteration as a cancel (the CONNACK arriving as the agent stops), and the agent would then
    run on instead of stopping. Compared with a count taken before, because 3.11's TaskGroup
    leaves one cancel request counted on its parent after a child fails.
    """
    if _cancel_requests() > before:
        raise asyncio.CancelledError


def reopen_log_files() -> int:
    """Close every file handler so it reopens its path on the next record (after logrotate)."""
    count = 0
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    handler.close()
                finally:
                    handler.release()
                count += 1
    return count
