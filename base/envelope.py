"""The message envelope (v1): what every uplink and downlink MQTT payload looks like.

Owns encoding and decoding; pure functions, no I/O. One event is one envelope
`{"id", "kind", "ts", "seq", "data"}`; a batched message is a JSON array of envelopes (the
uplink batches when there is a backlog). `id` is a UUID that stays the same when an event is
sent again, so consumers deduplicate by it; `seq` counts per stream from 1 and lets a consumer
see gaps. `docs/asyncapi.yaml` describes the same shapes and the tests validate against it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from base.jsonread import JsonInputError, read_json

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Envelope",
    "MalformedMessage",
    "decode_message",
    "decode_objects",
    "encode_message",
    "format_ts",
    "parse_ts",
]

# Larger payloads are refused by decode: the cloud never needs them and a Pi should not buffer them.
MAX_MESSAGE_BYTES = 256 * 1024
_SEPARATORS = (",", ":")
_FIELDS = ("id", "kind", "ts", "seq", "data")
# What `str(uuid.UUID(x)) == x` accepts, a fifth of its cost: the cloud validates every
# envelope of every device (bench/ingest_bench.py), the device every one it sends.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


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
        moment = datetime.fromisoformat(value)  # Python 3.11 reads a trailing `Z` itself
    except (ValueError, TypeError):
        raise MalformedMessage(f"ts: not an RFC 3339 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise MalformedMessage(f"ts: timestamp needs a zone (Z or +hh:mm): {value!r}")
    return moment.timestamp()


def _check_fields(id: Any, kind: Any, ts: Any, seq: Any, data: Any) -> float:
    """Every rule of a well-formed envelope; returns `ts` as epoch seconds.

    Raises:
        MalformedMessage: the first rule broken, naming the field.
    """
    if not isinstance(id, str) or _CANONICAL_UUID.match(id) is None:
        raise MalformedMessage(f"id: must be a UUID (lower-case, hyphenated), got {id!r}")
    if not isinstance(kind, str) or not kind:
        raise MalformedMessage(f"kind: must be a non-empty string, got {kind!r}")
    if not isinstance(ts, str):
        raise MalformedMessage(f"ts: must be a string, got {ts!r}")
    epoch = parse_ts(ts)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise MalformedMessage(f"seq: must be an integer >= 0, got {seq!r}")
    if not isinstance(data, Mapping):
        raise MalformedMessage(f"data: must be an object, got {type(data).__name__}")
    return epoch


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """One event. Validated on construction, so an `Envelope` in hand is always well formed.

    `epoch` is `ts` as epoch seconds, read once during that validation.
    """

    id: str
    kind: str
    ts: str
    seq: int
    data: Mapping[str, Any]
    epoch: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "epoch", _check_fields(self.id, self.kind, self.ts, self.seq, self.data))

    @classmethod
    def _of_checked(cls, obj: Mapping[str, Any], epoch: float) -> Envelope:
        """An envelope from a JSON object `decode_objects` has already checked (no second check)."""
        envelope = object.__new__(cls)
        for name in _FIELDS:
            object.__setattr__(envelope, name, obj[name])
        object.__setattr__(envelope, "epoch", epoch)
        return envelope

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


def _checked(obj: Any, where: str | int) -> float:
    """Check one envelope-shaped JSON object (`where`: its index in a batch); its epoch."""
    if not isinstance(obj, dict):
        raise MalformedMessage(
            f"{_where(where)}: an envelope must be a JSON object, got {type(obj).__name__}"
        )
    try:
        fields = (obj["id"], obj["kind"], obj["ts"], obj["seq"], obj["data"])
    except KeyError:
        missing = [key for key in _FIELDS if key not in obj]
        raise MalformedMessage(f"{_where(where)}: missing {', '.join(missing)}") from None
    try:
        return _check_fields(*fields)
    except MalformedMessage as exc:
        raise MalformedMessage(f"{_where(where)}.{exc}") from None


def _where(where: str | int) -> str:
    return f"[{where}]" if isinstance(where, int) else where


def decode_objects(
    payload: bytes | bytearray | str, *, loads: Callable[[bytes | bytearray | str], Any] | None = None
) -> list[tuple[dict[str, Any], float]]:
    """The envelopes of a message as checked JSON objects, each with its `ts` in epoch seconds.

    Every check `decode_message` makes, without building an `Envelope` per event: the fleet
    ingest reads tens of thousands a second and stores them as rows. `loads` as in
    `base.jsonread.read_json`.

    Raises:
        MalformedMessage: as `decode_message`.
    """
    try:
        body = read_json(payload, max_bytes=MAX_MESSAGE_BYTES, loads=loads)
    except JsonInputError as exc:
        raise MalformedMessage(f"message: {exc}") from None
    if isinstance(body, list):
        if not body:
            raise MalformedMessage("a batch must hold at least one envelope")
        return [(item, _checked(item, index)) for index, item in enumerate(body)]
    return [(body, _checked(body, "envelope"))]


def decode_message(payload: bytes | bytearray | str) -> list[Envelope]:
    """Parse a message into its envelopes (a single object gives a one-element list).

    Raises:
        MalformedMessage: not UTF-8 JSON, too large, too deeply nested (the bounded reader,
            `base.jsonread`), or not envelope-shaped; the message names why.
    """
    return [Envelope._of_checked(obj, epoch) for obj, epoch in decode_objects(payload)]
