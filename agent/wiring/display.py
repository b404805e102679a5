"""The display adapter: builds the display service from the device's config and registers it.

The driver room knows nothing of the agent; this is where its config, health and idle screen
come from.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from agent.live_config import live_config
from agent.wiring.health import DriverHealth
from drivers.display.screens import (
    FailedScreen,
    IdleScreen,
    JoinedScreen,
    PaidScreen,
    PayScreen,
    Screen,
    ScreenError,
    WaitingScreen,
)
from drivers.display.service import DisplayService, friend_url, open_display

if TYPE_CHECKING:
    from agent.context import AgentContext

__all__ = ["ScreenPort", "build_display", "to_display_screen"]


def build_display(ctx: AgentContext) -> DisplayService:
    """The display service for this device, registered as `ctx.services["display"]`, and its
    screen port for the other rooms as `ctx.services["screens"]`."""
    config = ctx.config
    display = config.display
    state_dir = config.storage.state_dir
    mirror = display.png_path if display.driver != "png" else None
    service = DisplayService(
        config=display,
        health=DriverHealth(ctx.health),
        initial=IdleScreen(config.device.name, friend_url(config.line.oa_basic_id)),
        driver_factory=lambda: open_display(display, state_dir=state_dir),
        mirror_path=mirror,
        wall_clock=ctx.wall_clock,
    )
    ctx.services["display"] = service
    ctx.services["screens"] = ScreenPort(service)
    live = live_config(ctx.services, config)
    live.follow("display", ["display.language"], lambda cfg: service.set_language(cfg.display.language))
    return service


_DISPLAY_SCREENS: dict[str, type[Screen]] = {
    cls.__name__: cls
    for cls in (IdleScreen, PayScreen, WaitingScreen, PaidScreen, FailedScreen, JoinedScreen)
}


def to_display_screen(screen: Any) -> Screen:
    """The display room's screen of the same name and fields as `screen` (a frozen dataclass of
    `pos_bridge.screens` or `membership.conversion.JoinedScreen`).

    Raises:
        ScreenError: `screen` is no screen the display knows.
    """
    cls = _DISPLAY_SCREENS.get(type(screen).__name__)
    if cls is None or not dataclasses.is_dataclass(screen):
        raise ScreenError(f"not a display screen: {type(screen).__name__}")
    return cls(**{field.name: getattr(screen, field.name) for field in dataclasses.fields(screen)})


class ScreenPort:
    """The customer display as the payments and membership rooms see it
    (`ctx.services["screens"]`): their own screen dataclasses go in, the display room's come out."""

    def __init__(self, display: DisplayService) -> None:
        self.display = display

    @property
    def screen(self) -> Screen:
        return self.display.screen

    async def show(self, screen: Any) -> None:
        await self.display.show(to_display_screen(screen))
