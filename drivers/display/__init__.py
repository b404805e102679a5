"""The customer display: screen states, their layout, and drivers that put the pixels somewhere."""

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

__all__ = [
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
]
