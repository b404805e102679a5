"""The message envelope (v1): what every uplink and downlink MQTT payload looks like.

Owns encoding and decoding; pure functions, no I/O. One event is one envelope
`{"id", "kind", "ts", "seq", "data"}`; a batched message is a JSON array of envelopes (the
uplink batches when there is a backlog). `id` is a UUID that stays the same when an event is
sent again, so consumers deduplicate by it; `seq` counts per stream from 1 and lets a consumer
see gaps. `docs/asyncapi.yaml` describes the same shapes and the tests validate against it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from base.jsonread import JsonInputError, read_json

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Envelope",
    "MalformedMessage",
    "decode_message",
    "encode_message",
    "format_ts",
    "parse_ts",
]

# Larger payloads are refused by decode: the cloud never needs them and a Pi should not buffer them.
MAX_MESSAGE_BYTES = 256 * 1024
_SEPARATORS = (",", ":")


class MalformedMessage(ValueError):
    """A payload that is not a v1 envelope (or batch of envelopes); the sender is at fault."""


def format_ts(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. `2026-11-23T04:41:04.123Z`."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp with a zone.

    Raises:
        MalformedMessage: the string is not such a timestamp.
    """
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedMessage(f"ts: not an RFC 3339 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise MalformedMessage(f"ts: timestamp needs a zone (Z or +hh:mm): {value!r}")
    return moment.timestamp()


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """One event. Validated on construction, so an `Envelope` in hand is always well formed."""

    id: str
    kind: str
    ts: str
    seq: int
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        try:
            parsed = uuid.UUID(self.id)
        except (ValueError, AttributeError, TypeError):
            raise MalformedMessage(f"id: must be a UUID, got {self.id!r}") from None
        if str(parsed) != self.id:
            raise MalformedMessage(f"id: must be a lower-case hyphenated UUID, got {self.id!r}")
        if not isinstance(self.kind, str) or not self.kind:
            raise MalformedMessage(f"kind: must be a non-empty string, got {self.kind!r}")
        if not isinstance(self.ts, str):
            raise MalformedMessage(f"ts: must be a string, got {self.ts!r}")
        parse_ts(self.ts)
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise MalformedMessage(f"seq: must be an integer >= 0, got {self.seq!r}")
        if not isinstance(self.data, Mapping):
            raise MalformedMessage(f"data: must be an object, got {type(self.data).__name__}")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "ts": self.ts, "seq": self.seq, "data": dict(self.data)}


def encode_message(envelopes: Sequence[Envelope]) -> bytes:
    """One envelope as an object, several as an array (a batch).

    Raises:
        ValueError: no envelopes.
    """
    if not envelopes:
        raise ValueError("a message carries at least one envelope")
    body: Any = envelopes[0].to_json() if len(envelopes) == 1 else [e.to_json() for e in envelopes]
    return json.dumps(body, ensure_ascii=False, separators=_SEPARATORS, allow_nan=False).encode("utf-8")


def _envelope(obj: Any, where: str) -> Envelope:
    if not isinstance(obj, dict):
        raise MalformedMessage(f"{where}: an envelope must be a JSON object, got {type(obj).__name__}")
    missing = [key for key in ("id", "kind", "ts", "seq", "data") if key not in obj]
    if missing:
        raise MalformedMessage(f"{where}: missing {', '.join(missing)}")
    try:
        return Envelope(id=obj["id"], kind=obj["kind"], ts=obj["ts"], seq=obj["seq"], data=obj["data"])
    except MalformedMessage as exc:
        raise MalformedMessage(f"{where}.{exc}") from None


def decode_message(payload: bytes | bytearray | str) -> list[Envelope]:
    """Parse a message into its envelopes (a single object gives a one-element list).

    Raises:
        MalformedMessage: not UTF-8 JSON, too large, too deeply nested (the bounded reader,
            `base.jsonread`), or not envelope-shaped; the message names why.
    """
    try:
        body = read_json(payload, max_bytes=MAX_MESSAGE_BYTES)
    except JsonInputError as exc:
        raise MalformedMessage(f"message: {exc}") from None
    if isinstance(body, list):
        if not body:
            raise MalformedMessage("a batch must hold at least one envelope")
        return [_envelope(item, f"[{index}]") for index, item in enumerate(body)]
    return [_envelope(body, "envelope")]
