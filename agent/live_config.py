"""The effective config: the file plus the keys the cloud set live, and who follows them.

A key is live only while every component that reads it follows the live config: each such
component says so with `follow(reader, keys, apply)`, and `apply` gets the new config at once
whenever one of its keys changes (and right away if a persisted override is already there).
`agent.sync._downlink.LIVE_KEYS` names, per key, the readers that must follow it; the sync
service refuses a change while one of them does not (it reads the key only at start, or is
not running), instead of answering "applied" for a value nothing uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent.config import ShopEdgeConfig

__all__ = ["LiveConfig", "live_config"]

log = logging.getLogger(__name__)

Apply = Callable[[ShopEdgeConfig], None]


class LiveConfig:
    """`ctx.services["live_config"]` (see the module docstring)."""

    def __init__(self, config: ShopEdgeConfig) -> None:
        self.config = config
        self.overrides: dict[str, Any] = {}
        self.version = 0  # applied live changes so far (persisted with them)
        self._followers: dict[str, dict[str, Apply]] = {}  # key -> reader -> apply

    def follow(self, reader: str, keys: Iterable[str], apply: Apply) -> None:
        """`reader` uses the live value of `keys` from now on, through `apply`."""
        keys = set(keys)
        for key in keys:
            self._followers.setdefault(key, {})[reader] = apply
        if keys & set(self.overrides):
            apply(self.config)

    def unfollow(self, reader: str) -> None:
        """`reader` stopped (its component ended): its keys are no longer live through it."""
        for readers in self._followers.values():
            readers.pop(reader, None)

    def following(self) -> Mapping[str, frozenset[str]]:
        """Per key, the readers that follow it now."""
        return {key: frozenset(readers) for key, readers in self._followers.items()}

    def update(self, config: ShopEdgeConfig, changes: Mapping[str, Any], *, version: int) -> None:
        """Make `config` the effective one and tell every follower of a changed key."""
        self.config = config
        self.overrides.update(changes)
        self.version = version
        told: set[int] = set()
        for key in changes:
            for reader, apply in self._followers.get(key, {}).items():
                if id(apply) in told:
                    continue
                told.add(id(apply))
                try:
                    apply(config)
                except Exception:  # a follower's bug must not undo the others
                    log.exception("live config not applied by a reader", extra={"reader": reader})

    def effective(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values in force for `keys` (dotted), as JSON-ready values."""
        out: dict[str, Any] = {}
        for key in sorted(keys):
            section, _, name = key.partition(".")
            value = getattr(getattr(self.config, section), name)
            out[key] = value if isinstance(value, bool | int | float | str) or value is None else str(value)
        return out


def live_config(services: dict[str, Any], config: ShopEdgeConfig) -> LiveConfig:
    """The process's one `LiveConfig` (created on first use, by whichever component asks first)."""
    live = services.get("live_config")
    if live is None:
        live = services["live_config"] = LiveConfig(config)
    return live  # type: ignore[no-any-return]
