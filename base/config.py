"""The rules every config section follows: strict models, HOST:PORT and HWID checks.

A section forbids unknown keys (a typo is reported, not ignored) and is frozen. Each room owns
the model of its own section and builds it on `Section`; `agent.config` composes them.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

__all__ = [
    "HOSTPORT",
    "HWID",
    "Section",
    "check_hwid",
    "check_listen",
    "split_listen",
]


HOSTPORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})$")
# A LINE Beacon hardware id as LINE Official Account Manager issues it: 5 bytes, 10 hex digits.
HWID = re.compile(r"^[0-9a-f]{10}$")


class Section(BaseModel):
    """A config section: unknown keys are errors, values are immutable, strings are stripped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def check_listen(value: str) -> str:
    """A `HOST:PORT` validator for pydantic (`field_validator("listen")(check_listen)`)."""
    match = HOSTPORT.match(value)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, got {value!r}")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """Split a validated HOST:PORT into its parts (brackets removed from IPv6 hosts)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def check_hwid(hwid: str) -> str:
    """A HWID in lower case, or ValueError naming what is wrong."""
    hwid = hwid.lower()
    if not HWID.match(hwid):
        raise ValueError(f"each HWID must be 10 hex digits, got {hwid!r}")
    return hwid
