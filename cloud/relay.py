"""The LINE webhook relay (`shopedge relay`): runs in the merchant's cloud, not on the Pi.

Owns receiving LINE webhooks (`POST /line/webhook`), checking `X-Line-Signature` with
line-bot-sdk's WebhookParser, dropping redeliveries by `webhookEventId`, and publishing each
event on its own (QoS 1) to the MQTT topic of the one store/device it concerns:

- a text message carrying a binding token, or an account-link result whose nonce is one, goes
  to `shopedge/v1/{store}/{device}/down/line_event` of the token's clear routing part (the
  device holds the key and verifies the signature, so a forged token only reaches a device with
  the forger's own message, which the device rejects and counts);
- a beacon event goes to the store mapped from its HWID (`relay.beacon_stores`): to one
  device for `STORE/DEVICE`, or to the store-wide `shopedge/v1/STORE/_store/down/line_event`
  for `STORE`, which every device of the store subscribes to (`base.topics.store_down_filter`);
- follow, unfollow and anything unroutable go to `relay.fleet_topic` (the merchant's CRM).

Routing is a pure function (`route_event`), and so is checking an event's shape
(`event_problem`); the HTTP handler and the MQTT publisher are thin. Nothing is lost when the
broker is down: each accepted event is stored in the relay's own durable outbox (a SQLite file
in `relay.state_dir`, deduplicated atomically by `webhookEventId`) before LINE gets its 200,
and `cloud._forwarder.OutboxForwarder` publishes it from there once the broker acknowledges.
A body that is not JSON, too deep or too large is a 400 with a JSON error; a signed event
LINE will never send differently (a non-integer `timestamp`) is rejected and counted, never
answered 503, so LINE does not redeliver it forever. The envelope id is derived from
`webhookEventId`, so a device dedupes what two relays both published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from aiohttp import web

from base.backoff import Backoff
from base.config import split_listen
from base.httpjson import error_response, json_only
from base.jsonread import JsonInputError, read_json
from base.topics import STORE_WIDE
from cloud._forwarder import RELAY_STREAM, OutboxForwarder, relay_record
from cloud.config import RelayConfig, RelaySettings
from membership.binding import find_token, route_of
from offline_queue import Outbox, OutboxCondition, OutboxError, prepare_outbox_db

__all__ = [
    "ENVELOPE_NAMESPACE",
    "STATS",
    "EventMemory",
    "MqttPublisher",
    "PublishFailed",
    "RelayStats",
    "RouteDecision",
    "create_relay_app",
    "device_topic",
    "envelope",
    "event_problem",
    "rfc3339",
    "route_event",
    "run_relay",
]

log = logging.getLogger(__name__)

# uuid5(ENVELOPE_NAMESPACE, webhookEventId) is the envelope id: equal across relay instances.
ENVELOPE_NAMESPACE = uuid.UUID("6f1d3c0e-5a4b-4b59-9f1e-2d7c1a0b8e44")
WEBHOOK_PATH = "/line/webhook"
MAX_WEBHOOK_BYTES = 1024 * 1024
RELAY_DB = "relay.db"
# Claims that fail while connected before a record becomes a dead letter: the forwarder claims
# only while connected, so this counts broker-side refusals, not outages.
RELAY_MAX_ATTEMPTS = 1000


@dataclass(frozen=True, kw_only=True)
class RouteDecision:
    """Where one event goes and why (the reason is logged and counted)."""

    topic: str
    reason: str


def device_topic(store_id: str, device_id: str, kind: str = "line_event") -> str:
    return f"shopedge/v1/{store_id}/{device_id}/down/{kind}"


def route_event(event: dict[str, Any], relay: RelayConfig) -> RouteDecision:
    """The topic for one LINE webhook event (pure)."""
    kind = event.get("type")
    if kind == "message":
        message = event.get("message")
        if isinstance(message, dict) and message.get("type") == "text":
            token = find_token(str(message.get("text", "")))
            route = route_of(token) if token else None
            if route is not None:
                return RouteDecision(topic=device_topic(route.store_id, route.device_id), reason="binding")
        return RouteDecision(topic=relay.fleet_topic, reason="message_without_token")
    if kind == "accountLink":
        link = event.get("link")
        nonce = str(link.get("nonce", "")) if isinstance(link, dict) else ""
        route = route_of(nonce) if nonce else None
        if route is not None:
            return RouteDecision(topic=device_topic(route.store_id, route.device_id), reason="account_link")
        return RouteDecision(topic=relay.fleet_topic, reason="account_link_unrouted")
    if kind == "beacon":
        beacon = event.get("beacon")
        hwid = str(beacon.get("hwid", "")).lower() if isinstance(beacon, dict) else ""
        target = relay.beacon_stores.get(hwid)
        if target is None:
            return RouteDecision(topic=relay.fleet_topic, reason="beacon_unknown_hwid")
        store, _, device = target.partition("/")
        return RouteDecision(topic=device_topic(store, device or STORE_WIDE), reason="beacon")
    if kind in {"follow", "unfollow"}:
        return RouteDecision(topic=relay.fleet_topic, reason=str(kind))
    return RouteDecision(topic=relay.fleet_topic, reason="other")


def event_problem(event: Any) -> str | None:
    """Why one webhook event cannot be relayed, or None (pure; LINE's documented event shape)."""
    if not isinstance(event, dict):
        return f"an event must be a JSON object, got {type(event).__name__}"
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        return "type: must be a non-empty string"
    stamp = event.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp < 0:
        return f"timestamp: must be an integer of milliseconds, got {stamp!r}"
    event_id = event.get("webhookEventId")
    if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 255):
        return "webhookEventId: must be a string of 1 to 255 characters"
    for part in ("source", "message", "link", "beacon", "follow", "deliveryContext"):
        if part in event and not isinstance(event[part], dict):
            return f"{part}: must be an object"
    return None


def rfc3339(epoch: float) -> str:
    """The envelope's `ts`: RFC 3339 UTC with milliseconds, e.g. `2026-11-23T04:41:04.123Z`."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def envelope(event: dict[str, Any], *, destination: str, now: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The downlink envelope of one event (sync contract v1: id, kind, ts, seq, data).

    `seq` is LINE's event timestamp (ms): a stateless relay has no counter of its own.
    """
    event_id = str(event.get("webhookEventId") or "")
    return {
        "id": str(uuid.uuid5(ENVELOPE_NAMESPACE, event_id)) if event_id else str(uuid.uuid4()),
        "kind": "line_event",
        "ts": rfc3339(now),
        "seq": int(event["timestamp"]),
        "data": {"destination": destination, "event": event, "relay": extra},
    }


def _field(event: dict[str, Any], outer: str, inner: str) -> str:
    """`event[outer][inner]` as a string, "" when either level is missing or not an object."""
    part = event.get(outer)
    return str(part.get(inner, "")) if isinstance(part, dict) else ""


class EventMemory:
    """Recently seen keys with an expiry and a size cap (oldest forgotten first)."""

    def __init__(self, window_s: float, max_items: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.max_items = max_items
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def _expire(self) -> None:
        now = self._clock()
        while self._items:
            key, (at, _) = next(iter(self._items.items()))
            if now - at < self.window_s and len(self._items) <= self.max_items:
                break
            del self._items[key]

    def get(self, key: str) -> Any:
        self._expire()
        item = self._items.get(key)
        return None if item is None else item[1]

    def __contains__(self, key: str) -> bool:
        self._expire()
        return key in self._items

    def add(self, key: str, value: Any = True) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock(), value)
        self._expire()

    def __len__(self) -> int:
        return len(self._items)


class PublishFailed(Exception):
    """The broker did not acknowledge in time (or the relay is not connected)."""

    transient = True  # the world, not the event: retried however long it lasts (the consumer rule)


def _retrieve_disconnect(client: aiomqtt.Client) -> None:
    """Mark a lost connection's error as seen: aiomqtt 2.5 leaves it unretrieved when the wait is
    cancelled at the moment the broker goes away, and asyncio then logs it at shutdown."""
    disconnected: asyncio.Future[None] = client._disconnected
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()


class MqttPublisher:
    """One MQTT connection kept open (reconnecting with backoff); `publish` waits for PUBACK."""

    def __init__(self, config: RelaySettings, *, client_id: str | None = None) -> None:
        self.config = config
        self.client_id = client_id or f"shopedge-relay-{uuid.uuid4().hex[:12]}"
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    def _make_client(self) -> aiomqtt.Client:
        mqtt = self.config.mqtt
        tls: ssl.SSLContext | None = None
        if mqtt.tls:
            tls = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
            if mqtt.cert_file and mqtt.key_file:
                tls.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file))
        client = aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            identifier=self.client_id,
            username=mqtt.username or None,
            password=mqtt.password.get_secret_value() or None,
            keepalive=mqtt.keepalive_s,
            timeout=self.config.timeouts.mqtt_connect,
            tls_context=tls,
            max_inflight_messages=mqtt.max_inflight,
        )
        # The forwarder keeps at most `max_inflight` publishes pending (its claim batch); aiomqtt
        # warns above 10 by default, which a full batch would trip on every burst.
        client.pending_calls_threshold = mqtt.max_inflight
        return client

    async def run(self) -> None:
        """Stay connected until cancelled."""
        backoff = Backoff(base=0.5, cap=30.0)
        while True:
            try:
                async with self._make_client() as client:
                    self._client = client
                    self.connected.set()
                    backoff.reset()
                    log.info("relay connected to MQTT", extra={"host": self.config.mqtt.host})
                    try:
                        async for _ in client.messages:  # no subscriptions: this only ends on disconnect
                            pass
                    finally:
                        _retrieve_disconnect(client)
            except aiomqtt.MqttError as exc:
                log.warning("relay MQTT connection lost", extra={"error": str(exc)})
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff.next_delay())

    async def publish(self, topic: str, payload: bytes, *, timeout_s: float) -> None:
        client = self._client
        if client is None:
            raise PublishFailed("not connected to the MQTT broker")
        try:
            await client.publish(topic, payload, qos=1, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise PublishFailed(str(exc)) from exc


@dataclass
class RelayStats:
    """Counters shown on `/healthz`."""

    received: int = 0
    accepted: int = 0
    published: int = 0
    duplicates: int = 0
    rejected: int = 0
    bad_signatures: int = 0


STATS = web.AppKey("stats", RelayStats)
# The relay outbox's last reported condition and detail (`OutboxCondition`, set by its on_health).
STORAGE = web.AppKey("storage", list[str])


def create_relay_app(
    config: RelaySettings,
    publisher: MqttPublisher,
    outbox: Outbox,
    forwarder: OutboxForwarder,
    *,
    storage: list[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> web.Application:
    """The relay's aiohttp app: `POST /line/webhook` and `GET /healthz`."""
    from linebot.v3.webhook import SignatureValidator

    relay = config.relay
    storage_state = storage if storage is not None else [str(OutboxCondition.OK), "ok"]
    validator = SignatureValidator(config.line.channel_secret.get_secret_value())
    # Record ids the outbox returned lately: a put answered with one of them was a duplicate.
    stored = EventMemory(relay.dedupe_window_s, relay.dedupe_max_events, clock)
    follows = EventMemory(max(relay.follow_window_s, 1.0), relay.dedupe_max_events, clock)
    stats = RelayStats()

    def message_of(event: dict[str, Any], decision: RouteDecision, destination: str, now: float) -> bytes:
        user = _field(event, "source", "userId")
        follow = follows.get(user) if user else None
        extra: dict[str, Any] = {"received_at": now, "route": decision.reason}
        if decision.reason in {"binding", "account_link"}:
            extra["followed_at_ms"] = follow[0] if follow else None
            extra["new_follower"] = bool(follow and not follow[1])
        message = envelope(event, destination=destination, now=now, extra=extra)
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()

    async def webhook(request: web.Request) -> web.Response:
        raw = await request.read()
        signature = request.headers.get("X-Line-Signature", "")
        try:
            valid = validator.validate(raw.decode("utf-8"), signature)
        except UnicodeDecodeError:
            valid = False
        if not valid:
            stats.bad_signatures += 1
            log.warning("webhook with a bad signature refused", extra={"remote": request.remote})
            return error_response(401, "bad_signature", "X-Line-Signature does not match the body")
        try:
            payload = read_json(raw, max_bytes=MAX_WEBHOOK_BYTES)
        except JsonInputError as exc:
            return error_response(400, "malformed_json", str(exc))
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list):
            return error_response(
                400, "malformed_webhook", 'the body must be {"destination": ..., "events": [...]}'
            )
        destination = str(payload.get("destination", ""))
        now = wall_clock()
        accepted: list[tuple[str, dict[str, Any]]] = []
        rejected: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            stats.received += 1
            problem = event_problem(event)
            if problem is not None:
                stats.rejected += 1
                rejected.append({"index": index, "problem": problem})
                log.warning("webhook event rejected", extra={"index": index, "problem": problem})
                continue
            if event.get("type") == "follow":
                user = _field(event, "source", "userId")
                follow_info = event.get("follow")
                unblocked = isinstance(follow_info, dict) and follow_info.get("isUnblocked") is True
                if user:
                    follows.add(user, (event["timestamp"], unblocked))
            decision = route_event(event, relay)
            record = relay_record(decision.topic, message_of(event, decision, destination, now))
            accepted.append((str(event.get("webhookEventId") or ""), record))
        if events and not accepted:
            first = rejected[0]
            return error_response(
                400,
                "invalid_events",
                f"events[{first['index']}]: {first['problem']} (all {len(rejected)} rejected)",
            )
        try:
            ids = await asyncio.gather(
                *(outbox.put(RELAY_STREAM, record, dedupe_key=key or None) for key, record in accepted)
            )
        except OutboxError as exc:
            log.error("relay could not store webhook events", extra={"error": str(exc)})
            return error_response(
                503,
                "storage_unavailable",
                "the relay cannot store events right now; redeliver",
                **{"Retry-After": "5"},
            )
        for record_id in ids:
            if str(record_id) in stored:
                stats.duplicates += 1
            else:
                stored.add(str(record_id))
                stats.accepted += 1
        if accepted:
            forwarder.wake()
        return web.json_response({"accepted": len(accepted), "rejected": rejected})

    async def healthz(request: web.Request) -> web.Response:
        ok = publisher.connected.is_set()
        storage = request.app[STORAGE]
        stats.published = forwarder.published
        backlog = await outbox.depth(RELAY_STREAM)
        body = {"mqtt": "connected" if ok else "disconnected", "storage": storage[0], "backlog": backlog}
        healthy = ok and storage[0] != str(OutboxCondition.WRITE_FAILED)
        return web.json_response({**body, **stats.__dict__}, status=200 if healthy else 503)

    @web.middleware
    async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json":
                raise
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        return response

    app = web.Application(middlewares=[json_errors, json_only()], client_max_size=MAX_WEBHOOK_BYTES)
    app.router.add_post(WEBHOOK_PATH, webhook)
    app.router.add_get("/healthz", healthz)
    app[STATS] = stats
    app[STORAGE] = storage_state
    return app


async def open_relay_outbox(config: RelaySettings, storage: list[str]) -> Outbox:
    """The relay's durable outbox in `relay.state_dir` (tables created by the outbox's own DDL);
    `storage` is kept as [condition, detail] for `/healthz`.

    Raises:
        OutboxError: the file cannot be created or opened (the message names it).
    """
    path = config.relay.state_dir / RELAY_DB
    try:
        return await Outbox.open(
            path,
            prepare=prepare_outbox_db,
            max_attempts=RELAY_MAX_ATTEMPTS,
            on_health=lambda condition, detail: storage.__setitem__(slice(None), [str(condition), detail]),
        )
    except (OSError, sqlite3.Error) as exc:
        raise OutboxError(f"relay.state_dir: cannot open {path}: {exc}") from exc


async def run_relay(config: RelaySettings, *, started: asyncio.Event | None = None) -> None:
    """Serve the relay on `relay.listen` until cancelled."""
    if not config.line.channel_secret.get_secret_value():
        raise ValueError("line.channel_secret is empty: the relay cannot verify LINE's signatures")
    publisher = MqttPublisher(config)
    storage = [str(OutboxCondition.OK), "ok"]
    outbox = await open_relay_outbox(config, storage)
    forwarder = OutboxForwarder(
        outbox, publisher, batch=config.mqtt.max_inflight, timeout_s=config.timeouts.relay_publish
    )
    app = create_relay_app(config, publisher, outbox, forwarder, storage=storage)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_listen(config.relay.listen)
    site = web.TCPSite(runner, host, port)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(publisher.run(), name="shopedge.relay.mqtt")
            group.create_task(forwarder.run(), name="shopedge.relay.forward")
            await site.start()
            log.info("relay listening", extra={"listen": config.relay.listen, "path": WEBHOOK_PATH})
            if started is not None:
                started.set()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await outbox.close()
