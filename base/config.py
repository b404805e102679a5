"""The rules every config section follows: strict models, HOST:PORT and HWID checks.

A section forbids unknown keys (a typo is reported, not ignored) and is frozen. Each room owns
the model of its own section and builds it on `Section`; `agent.config` composes them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "HOSTPORT",
    "HWID",
    "ConfigError",
    "Section",
    "check_hwid",
    "check_listen",
    "iter_problems",
    "read_toml",
    "split_listen",
]


HOSTPORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})\Z")
# A LINE Beacon hardware id as LINE Official Account Manager issues it: 5 bytes, 10 hex digits.
HWID = re.compile(r"^[0-9a-f]{10}\Z")


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


def check_timezone(value: str) -> str:
    """An IANA time zone name (the device's and the cloud's report days), or ValueError."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"must be an IANA time zone such as 'Asia/Taipei', got {value!r}") from None
    return value


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one printable line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(error: Mapping[str, Any], example: str) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return f"unknown key (check the spelling against {example})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error" or isinstance(value, dict):
        return message
    return f"{message[:1].lower()}{message[1:]}, got {value!r}"


def iter_problems(
    exc: ValidationError, source: str, *, example: str = "config.example.toml"
) -> Iterator[str]:
    """One line per validation error: `source: dotted.key: what is wrong`."""
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
        yield f"{source}: {loc}: {_describe(error, example)}"


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as data, or ConfigError with one line saying why it cannot be read."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: {what} not found"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: {what} is not readable (permission denied)"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: {what} is a directory, not a file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: {what} is not UTF-8 text ({exc.reason})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax error: {exc}"]) from None
