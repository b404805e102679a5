"""Cloud sync over MQTT: the v1 topic/envelope contract, the outbox uplink, downlink handlers
and the session that reconnects (see docs/asyncapi.yaml)."""

from agent.sync._service import (
    DownlinkInbox,
    LiveConfig,
    SyncService,
    accept_line_event,
    status_payload,
)
from base.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    decode_message,
    encode_message,
    format_ts,
    parse_ts,
)
from base.topics import (
    DOWN_KINDS,
    PREFIX,
    UP_KINDS,
    TopicError,
    TopicRef,
    down_filter,
    down_topic,
    parse_topic,
    status_topic,
    up_topic,
)
from membership.conversion import LINE_INBOX_STREAM

__all__ = [
    "DOWN_KINDS",
    "LINE_INBOX_STREAM",
    "MAX_MESSAGE_BYTES",
    "PREFIX",
    "UP_KINDS",
    "DownlinkInbox",
    "Envelope",
    "LiveConfig",
    "MalformedMessage",
    "SyncService",
    "TopicError",
    "TopicRef",
    "accept_line_event",
    "decode_message",
    "down_filter",
    "down_topic",
    "encode_message",
    "format_ts",
    "parse_topic",
    "parse_ts",
    "status_payload",
    "status_topic",
    "up_topic",
]
