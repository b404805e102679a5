"""The one bounded JSON reader every entry point uses (POS API, webhook relay, MQTT downlink).

Owns turning bytes from outside into a JSON value, or into ONE error that names the problem:
too large, not UTF-8, not JSON (including NaN/Infinity and over-long integers), or nested
deeper than the caller allows. `json.loads` raises `RecursionError` (not a `ValueError`) on
deeply nested input; left alone that escaped every handler as a 500 or restarted the sync
component. Here it becomes the same `JsonInputError` as any other bad body, so a caller needs
one `except` to answer a 4xx. Pure, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "JsonInputError", "read_json"]

# Deepest value any ShopEdge input needs is about 8 levels (a LINE event inside a downlink
# envelope inside a batch); 32 leaves room for LINE adding structure, and stays far below the
# ~1000 frames at which the C decoder gives up with RecursionError.
MAX_DEPTH = 32


class JsonInputError(ValueError):
    """Input that is not JSON this entry point accepts; the message says why (the sender is at fault)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _standard_loads(text: bytes | bytearray | str) -> Any:
    return json.loads(text, parse_constant=_no_constant)


def read_json(
    raw: bytes | bytearray | str,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    loads: Callable[[bytes | bytearray | str], Any] | None = None,
) -> Any:
    """Parse `raw` as UTF-8 JSON within the size and depth limits.

    `loads` replaces the standard decoder where speed matters (the fleet ingest passes
    `orjson.loads`); it must refuse what this reader refuses (invalid UTF-8, NaN, Infinity)
    with a `ValueError`, and the limits still apply.

    Raises:
        JsonInputError: too large, not UTF-8, not JSON, or too deeply nested.
    """
    if len(raw) > max_bytes:
        raise JsonInputError(f"body is {len(raw)} bytes, over the {max_bytes} byte limit")
    if loads is None:
        try:
            raw = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonInputError("body is not UTF-8") from None
        loads = _standard_loads
    try:
        value = loads(raw)
    except RecursionError:
        raise JsonInputError(f"body is nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise JsonInputError(f"body is not JSON: {exc}") from None
    if _too_deep(value, max_depth):
        raise JsonInputError(f"body is nested deeper than {max_depth} levels")
    return value


_CONTAINERS = frozenset((dict, list))


def _too_deep(value: Any, max_depth: int) -> bool:
    """True if any array/object sits more than `max_depth` levels down.

    Level by level, holding only containers (no recursion, and a quarter of the cost of a
    stack of (value, depth) pairs: the fleet ingest runs it on every device message).
    """
    level = [value] if type(value) in _CONTAINERS else []
    depth = 1
    while level:
        if depth > max_depth:
            return True
        below: list[Any] = []
        add = below.append
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) in _CONTAINERS:
                    add(child)
        level = below
        depth += 1
    return False
