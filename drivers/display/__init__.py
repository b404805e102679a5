"""The customer display: screen states, their layout, and drivers that put the pixels somewhere."""

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
