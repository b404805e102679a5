"""The display driver's config section, `[display]`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from drivers._config import Section, check_listen

__all__ = [
    "DisplayConfig",
]


class DisplayConfig(Section):
    """The customer-facing display."""

    driver: Literal["web", "png", "framebuffer", "window"] = "web"
    size: str = "800x480"
    language: Literal["zh-TW", "en"] = "zh-TW"
    listen: str = "127.0.0.1:8738"
    png_path: Path | None = None
    framebuffer: Annotated[str, Field(pattern=r"^fb\d{1,2}$")] = "fb0"
    font_path: Path | None = None
    fullscreen: bool = True

    _listen = field_validator("listen")(check_listen)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{3,4})x(\d{3,4})", value)
        if not match or not (240 <= int(match[1]) <= 4096 and 240 <= int(match[2]) <= 4096):
            raise ValueError(f"must be WIDTHxHEIGHT between 240 and 4096, got {value!r}")
        return value

    @property
    def dimensions(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)
