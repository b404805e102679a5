"""The v1 topic and envelope contract, and that docs/asyncapi.yaml describes what the code emits."""

from __future__ import annotations

import json
import uuid

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.sync import (
    DOWN_KINDS,
    UP_KINDS,
    Envelope,
    MalformedMessage,
    TopicError,
    decode_message,
    down_filter,
    down_topic,
    encode_message,
    format_ts,
    parse_topic,
    parse_ts,
    status_topic,
    up_topic,
)
from tests.unit.sync.asyncapi import asyncapi, validate_message, validator


def env(seq: int = 1, kind: str = "sale", data: dict[str, object] | None = None) -> Envelope:
    return Envelope(id=str(uuid.uuid4()), kind=kind, ts=format_ts(1_763_870_000.25), seq=seq, data=data or {})


def test_topics_follow_the_contract() -> None:
    assert up_topic("store-001", "counter-1", "payment") == "shopedge/v1/store-001/counter-1/up/payment"
    assert down_topic("s", "d", "config") == "shopedge/v1/s/d/down/config"
    assert down_filter("s", "d") == "shopedge/v1/s/d/down/+"
    assert status_topic("s", "d") == "shopedge/v1/s/d/status"
    ref = parse_topic("shopedge/v1/s/d/down/command")
    assert (ref.store_id, ref.device_id, ref.direction, ref.kind) == ("s", "d", "down", "command")
    assert parse_topic("shopedge/v1/s/d/status").direction == "status"


@pytest.mark.parametrize(
    "bad",
    ["store/+", "a#", "", "x" * 33, "a/b", "ü"],
)
def test_ids_that_could_escape_their_topic_are_refused(bad: str) -> None:
    with pytest.raises(TopicError, match="store_id"):
        up_topic(bad, "d", "sale")
    with pytest.raises(TopicError, match="device_id"):
        down_filter("s", bad)


@pytest.mark.parametrize(
    "topic",
    [
        "shopedge/v2/s/d/up/sale",
        "shopedge/v1/s/d/up",
        "shopedge/v1/s/d/sideways/sale",
        "shopedge/v1/s/d/up/Sale",
        "shopedge/v1/s/d/up/sale/extra",
        "shopedge/v1/s/+/up/sale",
        "other",
    ],
)
def test_parse_topic_rejects_foreign_topics(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_kind_lists_match_the_asyncapi_channels() -> None:
    channels = asyncapi()["channels"]
    assert tuple(channels["uplink"]["parameters"]["kind"]["enum"]) == UP_KINDS
    assert tuple(channels["downlink"]["parameters"]["kind"]["enum"]) == DOWN_KINDS
    assert channels["uplink"]["address"] == up_topic("S", "D", "k").replace("S", "{store_id}").replace(
        "D", "{device_id}"
    ).replace("/k", "/{kind}")


def test_single_and_batched_messages_round_trip_and_match_the_schema() -> None:
    one = env()
    payload = encode_message([one])
    assert json.loads(payload)["seq"] == 1
    validate_message(payload)
    assert decode_message(payload) == [one]
    batch = [env(seq) for seq in range(1, 6)]
    payload = encode_message(batch)
    assert isinstance(json.loads(payload), list)
    validate_message(payload)
    assert decode_message(payload) == batch


def test_encode_needs_an_envelope() -> None:
    with pytest.raises(ValueError, match="at least one"):
        encode_message([])


@given(
    seq=st.integers(min_value=0, max_value=2**53),
    ts=st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    data=st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=20), st.booleans())),
)
def test_any_valid_envelope_round_trips_and_validates(seq: int, ts: float, data: dict[str, object]) -> None:
    one = Envelope(id=str(uuid.uuid4()), kind="presence", ts=format_ts(ts), seq=seq, data=data)
    payload = encode_message([one])
    validate_message(payload)
    assert decode_message(payload) == [one]
    assert abs(parse_ts(one.ts) - ts) < 0.001


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[]", "at least one"),
        (b"42", "must be a JSON object"),
        (b'{"id":"x"}', "missing kind, ts, seq, data"),
        (b'{"id":"x","kind":"k","ts":"2026-01-01T00:00:00Z","seq":1,"data":{}}', "id: must be a UUID"),
        (
            b'{"id":"0E9C56F8-0B4B-4C38-9C1F-3E2A1D7B6F10","kind":"k","ts":"2026-01-01T00:00:00Z","seq":1,"data":{}}',
            "lower-case",
        ),
        (b'{"id":"%s","kind":"","ts":"2026-01-01T00:00:00Z","seq":1,"data":{}}', "kind"),
        (b'{"id":"%s","kind":"k","ts":"yesterday","seq":1,"data":{}}', "ts: not an RFC 3339"),
        (b'{"id":"%s","kind":"k","ts":"2026-01-01T00:00:00","seq":1,"data":{}}', "needs a zone"),
        (b'{"id":"%s","kind":"k","ts":"2026-01-01T00:00:00Z","seq":-1,"data":{}}', "seq"),
        (b'{"id":"%s","kind":"k","ts":"2026-01-01T00:00:00Z","seq":true,"data":{}}', "seq"),
        (b'{"id":"%s","kind":"k","ts":"2026-01-01T00:00:00Z","seq":1,"data":[]}', "data: must be an object"),
        (b'[{"id":"%s","kind":"k","ts":"2026-01-01T00:00:00Z","seq":1,"data":{}}, 3]', r"\[1\]"),
        (b" " * (256 * 1024 + 1), "over the"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    if b"%s" in payload:
        payload = payload.replace(b"%s", str(uuid.uuid4()).encode())
    with pytest.raises(MalformedMessage, match=reason):
        decode_message(payload)


def test_schema_rejects_what_decode_rejects() -> None:
    bad = {"id": "x", "kind": "sale", "ts": "2026-01-01T00:00:00Z", "seq": 1, "data": {}}
    with pytest.raises(jsonschema.ValidationError):
        validator("Envelope").validate(bad)
    with pytest.raises(jsonschema.ValidationError):
        validator("CommandEnvelope").validate(
            {**env(kind="command").to_json(), "data": {"name": "format_disk"}}
        )
    validator("CommandEnvelope").validate({**env(kind="command").to_json(), "data": {"name": "ping"}})
    validator("ConfigEnvelope").validate(
        {**env(kind="config").to_json(), "data": {"set": {"mqtt.batch_max": 9}}}
    )
