"""Real MQTT brokers for the sync tests: Mosquitto and NATS (MQTT listener + JetStream).

Each broker runs as a child process on a free 127.0.0.1 port with its state in a temporary
directory, can be stopped and started again on the same port (the outage test), and is
always killed when the fixture ends. Import the fixtures into a test module with
`from tests.integration.sync_brokers import broker_fixture  # noqa: F401` (fixture `broker`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ACL_EXAMPLE = REPO / "deploy" / "mosquitto" / "acl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"broker exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port} within {timeout}s")


@dataclass
class Broker:
    """One broker process that can be stopped and restarted on the same port."""

    engine: str
    argv: list[str]
    port: int
    workdir: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.engine}.log"

    def start(self) -> None:
        assert self.proc is None, "already running"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        _wait_listening(self.port, self.proc, self.log)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), like a broker restart; persistent state is kept."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None


def _mosquitto_conf(
    workdir: Path, port: int, *, acl: Path | None, passwords: Path | None, extra: list[str]
) -> Path:
    lines = [
        f"listener {port} 127.0.0.1",
        f"allow_anonymous {'false' if passwords or extra else 'true'}",
        "persistence true",
        f"persistence_location {workdir}/",
        f"log_dest file {workdir}/mosquitto.log",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type subscribe",
        "max_queued_messages 100000",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    if passwords is not None:
        lines.append(f"password_file {passwords}")
    if acl is not None:
        lines.append(f"acl_file {acl}")
    lines.extend(extra)
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


def make_mosquitto(
    workdir: Path,
    *,
    acl: Path | None = None,
    users: dict[str, str] | None = None,
    extra: list[str] | None = None,
) -> Broker:
    """A Mosquitto config: anonymous by default; `users` or `extra` lines (e.g. TLS) close it."""
    workdir.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwords: Path | None = None
    if users:
        passwords = workdir / "passwd"
        passwords.write_text("", encoding="utf-8")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
    port = free_port()
    conf = _mosquitto_conf(workdir, port, acl=acl, passwords=passwords, extra=extra or [])
    return Broker(engine="mosquitto", argv=[exe, "-c", str(conf)], port=port, workdir=workdir)


def make_nats(workdir: Path) -> Broker:
    workdir.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port, client_port = free_port(), free_port()
    conf = workdir / "nats.conf"
    conf.write_text(
        f"server_name: shopedge_test_{port}\n"
        f"listen: 127.0.0.1:{client_port}\n"
        f'jetstream {{ store_dir: "{workdir}/js" }}\n'
        f"mqtt {{ listen: 127.0.0.1:{port} }}\n",
        encoding="utf-8",
    )
    return Broker(engine="nats", argv=[exe, "-c", str(conf)], port=port, workdir=workdir)


def _run(broker: Broker) -> Iterator[Broker]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(name="mosquitto")
def mosquitto_fixture(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed (deploy/system-deps.sh test)")
    yield from _run(make_mosquitto(tmp_path / "mosquitto"))


@pytest.fixture(name="nats_mqtt")
def nats_fixture(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("nats-server") is None and not Path("/usr/sbin/nats-server").exists():
        pytest.fail("nats-server is not installed (deploy/system-deps.sh test)")
    yield from _run(make_nats(tmp_path / "nats"))


@pytest.fixture(name="broker", params=["mosquitto", "nats"])
def broker_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """The same test against Mosquitto and against NATS's MQTT listener."""
    factory = make_mosquitto if request.param == "mosquitto" else make_nats
    yield from _run(factory(tmp_path / str(request.param)))
