"""Barcode scanner: the keyboard-wedge driver (evdev) and its replay twin; `open_scanner` picks one."""

from __future__ import annotations

from pathlib import Path

from drivers.scanner.base import ONE_TIME_KEY, Scanner, WedgeDecoder
from drivers.scanner.replay import ReplayScanner

__all__ = ["ONE_TIME_KEY", "ReplayScanner", "Scanner", "WedgeDecoder", "open_scanner"]


def open_scanner(kind: str, *, device: str = "", replay_file: Path | None = None) -> Scanner:
    """The scanner `pos.scanner` names (`evdev` reads `device`, `replay` reads `replay_file`);
    hardware libraries are imported only in their branch."""
    if kind == "evdev":
        from drivers.scanner.evdev_scanner import EvdevScanner

        return EvdevScanner(device)
    if kind == "replay" and replay_file is not None:
        return ReplayScanner.from_file(replay_file)
    raise ValueError(f"pos.scanner: no scanner configured ({kind!r})")
