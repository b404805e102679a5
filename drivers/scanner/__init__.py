"""Barcode scanner: the keyboard-wedge driver (evdev) and its replay twin; `open_scanner` picks one."""

from __future__ import annotations

from agent.config import POSConfig
from drivers.scanner.base import ONE_TIME_KEY, Scanner, WedgeDecoder
from drivers.scanner.replay import ReplayScanner

__all__ = ["ONE_TIME_KEY", "ReplayScanner", "Scanner", "WedgeDecoder", "open_scanner"]


def open_scanner(config: POSConfig) -> Scanner:
    """The scanner `pos.scanner` names; hardware libraries are imported only in their branch."""
    if config.scanner == "evdev":
        from drivers.scanner.evdev_scanner import EvdevScanner

        return EvdevScanner(config.scanner_device)
    if config.scanner == "replay" and config.scanner_replay_file is not None:
        return ReplayScanner.from_file(config.scanner_replay_file)
    raise ValueError(f"pos.scanner: no scanner configured ({config.scanner!r})")
