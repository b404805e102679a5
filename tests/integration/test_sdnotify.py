"""The notify protocol against a real datagram socket standing in for systemd.

A reader thread timestamps each datagram on arrival, so a blocked event loop shows up as a
gap in the WATCHDOG=1 pings even though the test itself runs on that loop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.sdnotify import Notifier, SystemdNotifier
from base.health import HealthBoard, Level

ROOT = Path(__file__).resolve().parents[2]


class FakeSystemd:
    """Binds a unix datagram socket and records (monotonic time, fields) per message."""

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes, so not under pytest's long tmp_path.
        self.dir = tempfile.mkdtemp(prefix="sdn")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in list(self.messages) if key in m]

    def wait_for(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.with_key(key)
            if found:
                return found[0][1]
            time.sleep(0.02)
        raise AssertionError(f"no {key} from the agent; got {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        shutil.rmtree(self.dir)


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd()
    yield fake
    fake.close()


async def _until(predicate: Callable[[], object], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_ready_only_after_every_component_reported(systemd: FakeSystemd) -> None:
    health = HealthBoard()
    component = SystemdNotifier(health, ["pos", "ble"], Notifier(systemd.path), watchdog_s=None)
    task = asyncio.create_task(component.run())
    await _until(lambda: systemd.with_key("STATUS"))
    assert systemd.with_key("STATUS")[0][1]["STATUS"] == "starting: waiting for ble, pos"
    health.set("pos", Level.GREEN, "listening")
    await _until(lambda: len(systemd.with_key("STATUS")) >= 2)
    assert not systemd.with_key("READY")
    health.set("ble", Level.AMBER, "adapter off")
    await _until(lambda: systemd.with_key("READY"))
    ready = systemd.with_key("READY")[0][1]
    assert ready["STATUS"] == "amber: ble amber (adapter off); pos green (listening)"
    health.set("ble", Level.GREEN, "scanning")
    await _until(lambda: systemd.with_key("STATUS")[-1][1]["STATUS"].startswith("green"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: systemd.with_key("STOPPING"))
    assert len(systemd.with_key("READY")) == 1


async def test_ready_after_grace_when_a_component_stays_silent(systemd: FakeSystemd) -> None:
    health = HealthBoard()
    component = SystemdNotifier(health, ["pos", "ble"], Notifier(systemd.path), watchdog_s=None, grace=0.2)
    task = asyncio.create_task(component.run())
    health.set("pos", Level.GREEN)
    await _until(lambda: systemd.with_key("READY"), within=3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_watchdog_pings_stop_while_the_loop_is_blocked(systemd: FakeSystemd) -> None:
    health = HealthBoard()
    health.set("pos", Level.GREEN)
    component = SystemdNotifier(health, ["pos"], Notifier(systemd.path), watchdog_s=0.05)
    task = asyncio.create_task(component.run())
    await asyncio.sleep(0.5)
    blocked_at = time.monotonic()
    time.sleep(0.6)  # noqa: ASYNC251 - a blocking call on the loop: what a stuck agent looks like
    unblocked_at = time.monotonic()
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = [t for t, _ in systemd.with_key("WATCHDOG")]
    before = [t for t in pings if t < blocked_at]
    during = [t for t in pings if blocked_at + 0.02 < t < unblocked_at]
    after = [t for t in pings if t > unblocked_at]
    assert len(before) >= 5 and len(after) >= 5, pings
    assert during == []
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) >= 0.55
    assert sorted(gaps)[len(gaps) // 2] < 0.2  # otherwise the pings come every half interval


def test_agent_process_notifies_ready_watchdog_and_stopping(systemd: FakeSystemd, config_file: Path) -> None:
    env = {**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = systemd.wait_for("READY")
        assert ready["READY"] == "1"
        assert "status green" in ready["STATUS"]
        time.sleep(0.5)
        assert len(systemd.with_key("WATCHDOG")) >= 3
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert systemd.with_key("STOPPING")
    finally:
        proc.kill()
