"""The customer display: screen states, their layout, and drivers that put the pixels somewhere.

The names below load on first use (PEP 562): the agent reads `drivers.display.config` at every
start, and importing this package must not pull in Pillow, qrcode and zxing-cpp with it; the
display stack loads when the display component starts (issue 17).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.display.base import DisplayDriver, DriverError
    from drivers.display.fonts import FontNotFoundError, find_fonts
    from drivers.display.layout import Frame, render
    from drivers.display.screens import (
        DisplayError,
        FailedScreen,
        IdleScreen,
        JoinedScreen,
        PaidScreen,
        PayScreen,
        Screen,
        ScreenError,
        WaitingScreen,
        screen_name,
    )
    from drivers.display.service import DisplayService, open_display

__all__ = [
    "DisplayDriver",
    "DisplayError",
    "DisplayService",
    "DriverError",
    "FailedScreen",
    "FontNotFoundError",
    "Frame",
    "IdleScreen",
    "JoinedScreen",
    "PaidScreen",
    "PayScreen",
    "Screen",
    "ScreenError",
    "WaitingScreen",
    "find_fonts",
    "open_display",
    "render",
    "screen_name",
]

_HOME = {
    "DisplayDriver": "base",
    "DriverError": "base",
    "FontNotFoundError": "fonts",
    "find_fonts": "fonts",
    "Frame": "layout",
    "render": "layout",
    "DisplayService": "service",
    "open_display": "service",
    **dict.fromkeys(
        [
            "DisplayError",
            "FailedScreen",
            "IdleScreen",
            "JoinedScreen",
            "PaidScreen",
            "PayScreen",
            "Screen",
            "ScreenError",
            "WaitingScreen",
            "screen_name",
        ],
        "screens",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
