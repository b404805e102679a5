"""The ingest worker's MQTT session: paho-mqtt 2 directly, with manual acknowledgements.

aiomqtt 2.5 builds its paho client without `manual_ack`, so paho sends the PUBACK as soon as
the message is queued for the application, before anything is stored: a crash then loses it.
paho 2 itself offers `Client(manual_ack=True)` and `ack(mid, qos)`; this module runs paho's
network loop on its own thread (`loop_start`) and hands messages to the asyncio loop.

Rules:
- fixed client id, clean start off and a session expiry (MQTT 5; clean session off on
  3.1.1), so the broker keeps the unacknowledged messages across a crash and sends them again,
  with their original packet ids, when the same worker reconnects;
- Receive Maximum bounds how many unacknowledged messages the broker sends us (backpressure);
- an ack is sent only for a message received on the connection that is still up: acks for a
  connection that has dropped are discarded (the broker redelivers; the store dedupes), so a
  packet id is never acknowledged on a session where it may name another message.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from base.mqtt import MQTTConfig
from base.topics import PREFIX

__all__ = ["IngestSession", "Received", "status_filter", "uplink_filter"]

log = logging.getLogger(__name__)


def uplink_filter(group: str) -> str:
    """Every device's uplink, shared across the worker group."""
    return f"$share/{group}/{PREFIX}/+/+/up/+"


def status_filter() -> str:
    """Every device's retained status; not shared, because a broker sends no retained
    messages on a shared subscription and each worker wants all of them at connect."""
    return f"{PREFIX}/+/+/status"


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection it came on (acks for an older one are dropped)


class IngestSession:
    """One paho client for the life of the worker; paho reconnects it by itself."""

    def __init__(
        self,
        config: MQTTConfig,
        *,
        client_id: str,
        group: str,
        receive_max: int,
        on_message: Callable[[Received], None],
        on_state: Callable[[bool, str], None],
    ) -> None:
        self.config = config
        self.group = group
        self._on_message_cb = on_message
        self._on_state = on_state
        self._lock = threading.Lock()
        self.subscribed = threading.Event()  # set at the first SUBACK (tests and the demo wait on it)
        self._connection = 0
        self._up = False
        v5 = config.protocol != "3.1.1"
        self.protocol = paho.MQTTv5 if v5 else paho.MQTTv311
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=self.protocol,
            clean_session=None if v5 else False,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password.get_secret_value() or None)
        if config.tls:
            self.client.tls_set(
                ca_certs=str(config.ca_file) if config.ca_file else None,
                certfile=str(config.cert_file) if config.cert_file else None,
                keyfile=str(config.key_file) if config.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.client.reconnect_delay_set(
            min_delay=max(1, int(config.reconnect_min_s)), max_delay=max(1, int(config.reconnect_max_s))
        )
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message
        self.client.on_subscribe = self._handle_subscribe
        self._properties: Properties | None = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = config.session_expiry_s
            props.ReceiveMaximum = receive_max
            self._properties = props

    # ------------------------------------------------------------- paho thread

    def _handle_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            self._on_state(False, f"broker refused the connection: {reason}")
            return
        with self._lock:
            self._connection += 1
            self._up = True
        subscriptions: Sequence[tuple[str, Any]]
        if self.protocol == paho.MQTTv5:
            subscriptions = [
                (uplink_filter(self.group), SubscribeOptions(qos=1)),
                (status_filter(), SubscribeOptions(qos=1)),
            ]
        else:
            subscriptions = [(uplink_filter(self.group), 1), (status_filter(), 1)]
        client.subscribe(list(subscriptions))
        present = bool(getattr(flags, "session_present", False))
        self._on_state(
            True, f"connected to {self.config.host}:{self.config.port} (session present: {present})"
        )

    def _handle_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, codes: Any, _props: Any
    ) -> None:
        if all(not code.is_failure for code in codes):
            self.subscribed.set()
        else:
            self._on_state(True, f"broker refused a subscription: {[str(c) for c in codes]}")

    def _handle_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        with self._lock:
            self._connection += 1  # nothing received before this may be acked any more
            self._up = False
        self._on_state(False, f"disconnected ({reason}); paho reconnects with backoff")

    def _handle_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            connection = self._connection
        self._on_message_cb(
            Received(
                topic=message.topic,
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                connection=connection,
            )
        )

    # ------------------------------------------------------------- any thread

    def start(self) -> None:
        self.client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False if self.protocol == paho.MQTTv5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._properties,
        )
        self.client.loop_start()

    def ack(self, messages: Sequence[Received]) -> int:
        """PUBACK each message in arrival order; returns how many were acked (the others came on a
        connection that has dropped, and the broker will send them again)."""
        acked = 0
        with self._lock:
            for message in messages:
                if message.qos == 0 or message.connection != self._connection or not self._up:
                    continue
                self.client.ack(message.mid, message.qos)
                acked += 1
        return acked

    def stop(self) -> None:
        """Disconnect cleanly; the session (and any messages dealt to it) stays on the broker."""
        self.client.disconnect()
        self.client.loop_stop()


def thread_safe(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Received]
) -> Callable[[Received], None]:
    """A paho-thread callback that puts a message on an asyncio queue."""

    def put(message: Received) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, message)

    return put
