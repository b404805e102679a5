"""What the drivers' config sections share (a leaf room keeps its own small copy of the rules)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Section",
    "check_listen",
    "split_listen",
]


class Section(BaseModel):
    """A driver's config section: unknown keys are errors, values are immutable.

    `drivers` imports no other project package, so it keeps this four-line rule of its own
    instead of `base.config.Section` (the same settings).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_HOSTPORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})\Z")


def check_listen(value: str) -> str:
    match = _HOSTPORT.match(value)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, got {value!r}")
    return value


def split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
