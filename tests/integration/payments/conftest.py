"""Fixtures: the LINE Pay emulator on a free port and clients pointed at it (closed after the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

import pytest

from agent.config import LinePayConfig, TimeoutsConfig
from emulators.linepay import EmulatorServer
from pos_bridge.linepay import LinePayClient

CHANNEL_ID = "1234567890"
CHANNEL_SECRET = "a917ab6a2367b536f8e5a6e2977e06f4"


class MakeClient(Protocol):
    def __call__(
        self,
        url: str,
        *,
        secret: str = CHANNEL_SECRET,
        read: float = 2.0,
        nonce: Callable[[], str] | None = None,
    ) -> LinePayClient: ...


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(channel_id=CHANNEL_ID, channel_secret=CHANNEL_SECRET) as server:
        yield server


def make_client(
    url: str, *, secret: str = CHANNEL_SECRET, read: float = 2.0, nonce: Callable[[], str] | None = None
) -> LinePayClient:
    """A client with every read timeout `read`; the caller closes it (or use `clients`)."""
    config = LinePayConfig(channel_id=CHANNEL_ID, channel_secret=secret, api_base=url)  # type: ignore[arg-type]
    timeouts = TimeoutsConfig(
        linepay_connect=1.0, linepay_pay=read, linepay_request=read, linepay_check=read, linepay_capture=read
    )
    if nonce is None:
        return LinePayClient(config, timeouts)
    return LinePayClient(config, timeouts, nonce=nonce)


@pytest.fixture
async def clients() -> AsyncIterator[MakeClient]:
    """`make_client`, with every client it made closed when the test ends."""
    made: list[LinePayClient] = []

    def make(
        url: str, *, secret: str = CHANNEL_SECRET, read: float = 2.0, nonce: Callable[[], str] | None = None
    ) -> LinePayClient:
        made.append(make_client(url, secret=secret, read=read, nonce=nonce))
        return made[-1]

    yield make
    for client in made:
        await client.close()
