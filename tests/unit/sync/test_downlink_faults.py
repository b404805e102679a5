"""Downlink decisions under hostile payloads and the store-wide topic (issue 14)."""

from __future__ import annotations

import uuid

import pytest

from agent.sync._downlink import SeenIds, decide
from base.envelope import Envelope, encode_message, format_ts


def line_event() -> bytes:
    return encode_message(
        [Envelope(id=str(uuid.uuid4()), kind="line_event", ts=format_ts(0), seq=1, data={"event": {}})]
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,  # past the C decoder's recursion limit: RecursionError before
        b'{"id":' * 600 + b"1" + b"}" * 600,
        b"[" * 40 + b"]" * 40,  # parses, but deeper than any envelope
    ],
)
def test_deeply_nested_payload_is_dropped_as_malformed_not_raised(payload: bytes) -> None:
    (decision,) = decide(
        "shopedge/v1/s1/d1/down/line_event", payload, store_id="s1", device_id="d1", seen=SeenIds()
    )
    assert decision.action == "drop_malformed"
    assert "nested deeper" in decision.reason or "bytes, over" in decision.reason


def test_store_wide_line_event_reaches_every_device_of_that_store_only() -> None:
    (mine,) = decide(
        "shopedge/v1/s1/_store/down/line_event", line_event(), store_id="s1", device_id="d1", seen=SeenIds()
    )
    assert mine.action == "line_event"
    (other,) = decide(
        "shopedge/v1/s2/_store/down/line_event", line_event(), store_id="s1", device_id="d1", seen=SeenIds()
    )
    assert other.action == "ignore_unknown"
    (config,) = decide(
        "shopedge/v1/s1/_store/down/config", b"{}", store_id="s1", device_id="d1", seen=SeenIds()
    )
    assert config.action == "ignore_unknown" and "never store-wide" in config.reason


def test_no_device_can_be_called_store_wide() -> None:
    from agent.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as refused:
        parse_config({"device": {"store_id": "s1", "device_id": "_store"}}, environ={})
    assert refused.value.problems == [
        "<config>: device.device_id: '_store' is reserved for the store-wide downlink; pick another id"
    ]
