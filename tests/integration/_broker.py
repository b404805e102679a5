"""A real Mosquitto on a free 127.0.0.1 port for one test, and a subscriber that collects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mosquitto(tmp_path: Path, port: int | None = None, *, extra_conf: str = "") -> Iterator[int]:
    """Start Mosquitto (anonymous, loopback; `extra_conf`: more lines of mosquitto.conf) and
    yield its port; stopped and reaped after."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed (deploy/system-deps.sh test)")
    port = port or free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_conf}", encoding="utf-8"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                why = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"mosquitto did not start: {why}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


class Collector:
    """Subscribes to a filter and keeps every (topic, JSON payload) it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.qos: list[int] = []
        self._arrived = asyncio.Event()

    async def wait_for(self, count: int, within_s: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        async with asyncio.timeout(within_s):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.messages)

    def add(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.messages.append((topic, json.loads(payload)))
        self.qos.append(qos)
        self._arrived.set()


@contextlib.asynccontextmanager
async def collecting(port: int, topic_filter: str = "shopedge/#") -> AsyncIterator[Collector]:
    collector = Collector()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-sub-{port}") as client:
        await client.subscribe(topic_filter, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                collector.add(str(message.topic), bytes(message.payload), message.qos)  # type: ignore[arg-type]

        task = asyncio.create_task(pump())
        try:
            yield collector
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
