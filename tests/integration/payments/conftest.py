"""Fixtures: the LINE Pay emulator on a free port and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.config import LinePayConfig, TimeoutsConfig
from emulators.linepay import EmulatorServer
from pos_bridge.linepay import LinePayClient

CHANNEL_ID = "1234567890"
CHANNEL_SECRET = "a917ab6a2367b536f8e5a6e2977e06f4"


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(channel_id=CHANNEL_ID, channel_secret=CHANNEL_SECRET) as server:
        yield server


def make_client(url: str, *, secret: str = CHANNEL_SECRET, read: float = 2.0) -> LinePayClient:
    config = LinePayConfig(channel_id=CHANNEL_ID, channel_secret=secret, api_base=url)  # type: ignore[arg-type]
    timeouts = TimeoutsConfig(
        linepay_connect=1.0, linepay_pay=read, linepay_request=read, linepay_check=read, linepay_capture=read
    )
    return LinePayClient(config, timeouts)
