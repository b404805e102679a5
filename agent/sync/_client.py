"""The MQTT connection: an aiomqtt 2.5 client that reports each PUBACK's reason code.

aiomqtt's `publish()` waits for the PUBACK but drops its reason code and, after a broken
connection, waits out its timeout. The uplink needs both: a record is acknowledged in the
outbox only for a PUBACK with a success code (MQTT v5 brokers refuse with e.g. 0x87 "not
authorized"), and every in-flight publish must fail at once when the connection drops so
its records can be released and resent. `publish_qos1` therefore returns a future resolved
by the PUBACK callback and failed by the disconnect; `_map_errors` turns what aiomqtt and
paho raise into `SyncConnectionError`. Touches aiomqtt internals (`_client`,
`_disconnected`), which is why aiomqtt is pinned to ~=2.5.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from base.mqtt import MQTTConfig

__all__ = [
    "AuthRefused",
    "PublishRefused",
    "SyncClient",
    "SyncConnectionError",
    "UnsupportedProtocol",
    "Will",
    "client_options",
    "map_errors",
]

# CONNACK codes meaning "this broker does not speak the protocol version you asked for":
# 0x84 in MQTT v5, 1 in v3.1.1 (paho reports either).
_UNSUPPORTED_PROTOCOL = {0x84, 1}
# CONNACK codes meaning "your credentials are wrong or not allowed": v3.1.1 4/5, v5 0x86/0x87.
_AUTH_REFUSED = {4, 5, 0x86, 0x87}


class SyncConnectionError(Exception):
    """The broker connection could not be made or was lost (retry with backoff)."""


class UnsupportedProtocol(SyncConnectionError):
    """The broker refused the MQTT protocol version (e.g. NATS 2.9 speaks only v3.1.1)."""


class AuthRefused(SyncConnectionError):
    """The broker refused this device's username/password or certificate (a config problem)."""


# PUBACK reason codes that say the message itself can never be accepted (MQTT 5 3.4.2.1):
# 0x99 payload format invalid. Others (0x80 unspecified, 0x87 not authorized, 0x97 quota
# exceeded...) may be the broker's state or config: retried, dead only when they repeat.
_PERMANENT_REFUSALS = {0x99}


class PublishRefused(Exception):
    """The broker answered a publish with a failure reason code (MQTT v5 only)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"broker refused the publish: {reason} (0x{code:02x})")
        self.code = code
        self.reason = reason
        self.permanent = code in _PERMANENT_REFUSALS


@contextlib.contextmanager
def map_errors() -> Iterator[None]:
    """Turn aiomqtt/paho/socket errors into `SyncConnectionError` (one place, per the style guide)."""
    try:
        yield
    except aiomqtt.MqttCodeError as exc:
        code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
        if isinstance(exc, aiomqtt.exceptions.MqttConnectError) and code in _UNSUPPORTED_PROTOCOL:
            raise UnsupportedProtocol(str(exc)) from exc
        if isinstance(exc, aiomqtt.exceptions.MqttConnectError) and code in _AUTH_REFUSED:
            raise AuthRefused(str(exc)) from exc
        raise SyncConnectionError(str(exc) or type(exc).__name__) from exc
    except aiomqtt.MqttError as exc:
        raise SyncConnectionError(str(exc) or type(exc).__name__) from exc
    except (OSError, ssl.SSLError) as exc:
        raise SyncConnectionError(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Will:
    topic: str
    payload: bytes


def client_options(
    config: MQTTConfig,
    *,
    client_id: str,
    protocol: Literal["5", "3.1.1"],
    will: Will,
    connect_timeout: float,
) -> dict[str, Any]:
    """The aiomqtt.Client keyword arguments for a device session.

    A persistent session either way: MQTT v5 uses clean start off plus a session expiry;
    v3.1.1 (no expiry) uses clean session off, and the broker's own limit applies.
    """
    options: dict[str, Any] = {
        "hostname": config.host,
        "port": config.port,
        "identifier": client_id,
        "keepalive": config.keepalive_s,
        "timeout": connect_timeout,
        "max_inflight_messages": config.max_inflight,
        "will": aiomqtt.Will(topic=will.topic, payload=will.payload, qos=1, retain=True),
    }
    if config.username:
        options["username"] = config.username
        options["password"] = config.password.get_secret_value() or None
    if protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = config.session_expiry_s
        options.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=properties)
    else:
        options.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=False)
    if config.tls:
        options["tls_params"] = aiomqtt.TLSParameters(
            ca_certs=str(config.ca_file) if config.ca_file else None,
            certfile=str(config.cert_file) if config.cert_file else None,
            keyfile=str(config.key_file) if config.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    return options


class SyncClient(aiomqtt.Client):
    """aiomqtt.Client plus `publish_qos1` (PUBACK reason codes) and `wait_disconnected`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._acks: dict[int, asyncio.Future[None]] = {}

    def publish_qos1(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[None]:
        """Send a QoS 1 PUBLISH now; the future resolves on a successful PUBACK.

        The future fails with `PublishRefused` on a failure reason code and with
        `SyncConnectionError` when the connection drops first. The caller bounds how many
        are outstanding (the broker's in-flight window).

        Raises:
            SyncConnectionError: the client cannot send (not connected).
        """
        info = self._client.publish(topic, payload, 1, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise SyncConnectionError(f"could not publish: {paho.error_string(info.rc)}")
        future: asyncio.Future[None] = self._loop.create_future()
        self._acks[info.mid] = future
        return future

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        super()._on_publish(client, userdata, mid, reason_code, properties)
        future = self._acks.pop(mid, None)
        if future is None or future.done():
            return
        if reason_code.is_failure:
            future.set_exception(PublishRefused(reason_code.value, str(reason_code)))
        else:
            future.set_result(None)

    def fail_pending(self, reason: str) -> None:
        """Fail every outstanding publish (the connection is gone; their records go back)."""
        acks, self._acks = self._acks, {}
        for future in acks.values():
            if not future.done():
                future.set_exception(SyncConnectionError(reason))

    @property
    def outstanding(self) -> int:
        return len(self._acks)

    async def wait_disconnected(self) -> None:
        """Return when the connection ends; raises `SyncConnectionError` if it broke."""
        try:
            with map_errors():
                await asyncio.shield(self._disconnected)
        finally:
            self.fail_pending("connection lost before PUBACK")
        raise SyncConnectionError("disconnected by the broker")
