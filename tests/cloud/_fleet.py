"""Processes for the cloud tests: a Mosquitto with room for queued QoS 1 messages, ingest
workers as real `shopedge cloud ingest` processes, and a QoS 1 publisher."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from cloud.fleet_db import open_fleet_engine
from cloud.fleet_db.tables import envelopes
from tests.integration._broker import mosquitto

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def fleet_broker(tmp_path: Path) -> Iterator[int]:
    """Mosquitto as a fleet broker is set up (docs/cloud.md): unlimited queue for offline
    persistent sessions, so a killed worker's share waits for it."""
    with mosquitto(tmp_path, extra_conf="max_queued_messages 0\nmax_inflight_messages 0\n") as port:
        yield port


def write_cloud_toml(
    tmp_path: Path, *, database_url: str, port: int, batch_max: int = 200, batch_wait_ms: int = 20
) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(
        f"""
[cloud]
state_dir = "{tmp_path / "cloud-state"}"
database_url = "{database_url}"
group = "ingest"
batch_max = {batch_max}
batch_wait_ms = {batch_wait_ms}
db_retry_min_s = 0.2
db_retry_max_s = 1.0
[mqtt]
host = "127.0.0.1"
port = {port}
protocol = "5"
session_expiry_s = 600
reconnect_min_s = 1
reconnect_max_s = 2
""",
        encoding="utf-8",
    )
    return path


class Worker:
    """One `shopedge cloud ingest` process with its log file."""

    def __init__(self, config: Path, name: str, log_dir: Path) -> None:
        self.config, self.name = config, name
        self.log = log_dir / f"worker-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SHOPEDGE_LOG_FORMAT": "text"}
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "cloud",
                "ingest",
                "--config",
                str(self.config),
                "--worker",
                self.name,
                "--log-level",
                "DEBUG",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern: str, within_s: float = 20.0, after: int = 0) -> None:
        deadline = time.monotonic() + within_s
        while not re.search(pattern, self.text()[after:]):
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"worker {self.name} exited {self.proc.returncode}:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"worker {self.name}: no {pattern!r} within {within_s} s:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def received(self) -> int:
        found = re.findall(r"\"received\"?[=:] ?(\d+)", self.text().split(f"--- start {self.starts}\n")[-1])
        return int(found[-1]) if found else 0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Publisher:
    """A device-side QoS 1 publisher (paho, synchronous)."""

    def __init__(self, port: int, client_id: str = "test-device") -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def publish_all(self, messages: list[tuple[str, bytes]], within_s: float = 30.0) -> None:
        infos = [self.publish(topic, payload) for topic, payload in messages]
        deadline = time.monotonic() + within_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not PUBACK a test publish"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def count_envelopes(url: str) -> int:
    engine = open_fleet_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(envelopes)).scalar_one())
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within_s} s waiting for {what}")
        time.sleep(0.1)
