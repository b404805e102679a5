"""`shopedge doctor --json` on a freshly provisioned device against the LINE Pay and Messaging
API emulators and a real Mosquitto with password auth: nothing fails; then each dependency is
broken in turn and exactly the matching row fails with its hint."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from emulators.linepay import EmulatorServer
from emulators.messaging import MessagingEmulator, running_emulator
from tests.integration.pty_driver import Terminal

ROOT = Path(__file__).resolve().parents[2]
MQTT_USER, MQTT_PASSWORD = "counter", "broker-pass-123"
TOKEN = "channel-access-token-0123456789"
CHANNEL_ID, CHANNEL_SECRET = "1234567890", "linepay-channel-secret-abcdef"

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    port = _free_port()
    passwords = tmp_path / "mosquitto.pw"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), MQTT_USER, MQTT_PASSWORD], check=True)
    passwords.chmod(0o600)
    conf = tmp_path / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n{user}persistence false\n"
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
    broker = Broker(port=port, proc=proc)
    yield broker
    if proc.poll() is None:
        broker.stop()


@dataclass(frozen=True)
class Line:
    """Base URLs of the Messaging API and LINE Pay emulators."""

    messaging: str
    linepay: str


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    emulator = MessagingEmulator(access_tokens={TOKEN}, bot_basic_id="@shop123", bot_display_name="Test Shop")
    async with (
        EmulatorServer(channel_id=CHANNEL_ID, channel_secret=CHANNEL_SECRET) as linepay,
        running_emulator(emulator) as (_, messaging),
    ):
        yield Line(messaging=messaging, linepay=linepay.url)


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def device(tmp_path: Path, broker: Broker, line: Line) -> Path:
    """Provisioned non-interactively, with the live credential checks passing."""
    replay = tmp_path / "capture.jsonl"
    replay.write_text("")
    sets = {
        "linepay.api_base": line.linepay,
        "linepay.channel_id": CHANNEL_ID,
        "linepay.channel_secret": CHANNEL_SECRET,
        "line.api_base": line.messaging,
        "line.channel_access_token": TOKEN,
        "line.oa_basic_id": "@shop123",
        "mqtt.port": str(broker.port),
        "mqtt.username": MQTT_USER,
        "mqtt.password": MQTT_PASSWORD,
        "ble.driver": "replay",
        "ble.replay_file": str(replay),
    }
    args = [
        "provision",
        "--config-dir",
        str(tmp_path / "etc"),
        "--non-interactive",
        "--store-id",
        "store-1",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    code, out, err = await _run(*args)
    assert code == 0, out + err
    assert "PASS  linepay" in out and "PASS  line_token" in out and "PASS  broker" in out
    return tmp_path / "etc" / "config.toml"


async def _doctor(
    config: Path, env: dict[str, str] | None = None, *extra: str
) -> tuple[int, dict[str, dict[str, str]]]:
    code, out, err = await _run("doctor", "--config", str(config), "--json", *extra, env=env)
    assert "Traceback" not in err, err
    report = json.loads(out)
    assert report["ok"] is (code == 0)
    return code, {row["check"]: row for row in report["rows"]}


# Rows that must pass on any machine running these tests; "clock" depends on the host's NTP
# (a container reports "not synchronised": warn); "beacon" needs a running agent.
MUST_PASS = {"config", "state_dir", "ble", "display", "fonts", "broker", "line_token", "linepay", "outbox"}


def _replace_secret(config: Path, old: str, new: str) -> None:
    secrets = config.with_name("secrets.toml")
    text = secrets.read_text()
    assert old in text
    secrets.write_text(text.replace(old, new))


def _assert_only_failing(rows: dict[str, dict[str, str]], check: str, hint: str) -> None:
    failing = {name for name, row in rows.items() if row["status"] == "fail"}
    assert failing == {check}, rows
    assert hint in rows[check]["hint"], rows[check]


async def test_all_checks_pass_on_a_provisioned_device(device: Path) -> None:
    code, rows = await _doctor(device)
    assert code == 0, rows
    assert {name for name, row in rows.items() if row["status"] == "pass"} >= MUST_PASS, rows
    assert rows["clock"]["status"] in {"pass", "warn"}
    assert "s from LINE's clock" in rows["clock"]["detail"]
    assert rows["line_token"]["detail"] == "bot @shop123 (Test Shop)"
    assert "screen font for" in rows["fonts"]["detail"], rows["fonts"]


async def test_broker_down(device: Path, broker: Broker) -> None:
    broker.stop()
    code, rows = await _doctor(device)
    assert code == 1
    _assert_only_failing(rows, "broker", "check mqtt.host/mqtt.port")
    assert "unreachable" in rows["broker"]["detail"]


async def test_broker_rejects_wrong_password(device: Path) -> None:
    _replace_secret(device, MQTT_PASSWORD, "wrong-password")
    code, rows = await _doctor(device)
    assert code == 1
    _assert_only_failing(rows, "broker", "check mqtt.username and mqtt.password")


async def test_bad_line_token(device: Path) -> None:
    code, out, err = await _run(
        "provision",
        "--config-dir",
        str(device.parent),
        "--non-interactive",
        "--set",
        "line.channel_access_token=expired-token-abcdef",
    )
    assert code == 1 and "FAIL  line_token" in out, out + err
    code, rows = await _doctor(device)
    assert code == 1
    _assert_only_failing(rows, "line_token", "issue a new long-lived channel access token")
    assert "401" in rows["line_token"]["detail"]


async def test_wrong_linepay_secret(device: Path) -> None:
    _replace_secret(device, CHANNEL_SECRET, "not-the-channel-secret")
    code, rows = await _doctor(device)
    assert code == 1
    _assert_only_failing(rows, "linepay", "check linepay.channel_id and linepay.channel_secret")
    assert "1106" in rows["linepay"]["detail"]


async def test_read_only_state_dir(device: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    if os.geteuid() == 0 and shutil.which("unshare"):
        # Root ignores permission bits: make the directory a read-only bind mount in a private
        # mount namespace (invisible to the rest of the machine).
        proc = await asyncio.create_subprocess_exec(
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount --bind "{state}" "{state}" && mount -o remount,bind,ro "{state}" && '
            f'exec "{sys.executable}" -m agent doctor --json --config "{device}"',
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
        assert "Traceback" not in err.decode(), err
        code = proc.returncode
        rows = {row["check"]: row for row in json.loads(out)["rows"]}
    else:
        state.chmod(0o555)
        try:
            code, rows = await _doctor(device)
        finally:
            state.chmod(0o750)
    assert code == 1
    _assert_only_failing(rows, "state_dir", "make it writable by the service user")
    assert "not writable" in rows["state_dir"]["detail"]


async def test_no_cjk_font(device: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-fonts"
    empty.mkdir()
    code, rows = await _doctor(device, {"SHOPEDGE_FONT_DIRS": str(empty)})
    assert code == 1
    _assert_only_failing(rows, "fonts", "apt-get install fonts-noto-cjk")


async def test_invalid_config_is_one_failing_row(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[device]\nstore_id = "s"\n')
    code, rows = await _doctor(config)
    assert code == 1
    assert list(rows) == ["config"]
    assert "device.device_id: missing required key" in rows["config"]["detail"]


async def test_support_bundle_has_no_secrets(device: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "support.tar.gz"
    code, rows = await _doctor(device, None, "--bundle", str(bundle))
    assert code == 0, rows
    with tarfile.open(bundle) as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert set(files) == {"config.toml", "doctor.json", "queue.json", "logs.txt", "system.json"}
    everything = "".join(files.values())
    secrets = device.with_name("secrets.toml").read_text()
    for secret in (TOKEN, CHANNEL_SECRET, MQTT_PASSWORD):
        assert secret in secrets and secret not in everything
    assert "store-1" in files["config.toml"] and 'password = "***"' in files["config.toml"]
    assert {row["check"] for row in json.loads(files["doctor.json"])} >= MUST_PASS


def _interactive_provision(etc: Path, state: Path, broker: Broker, line: Line) -> tuple[int, str]:
    term = Terminal("provision", "--config-dir", str(etc))
    try:
        answers = [
            ("Store id:", "store-9"),
            ("Device id [counter-1]:", ""),
            ("Device name [ShopEdge counter]:", ""),
            ("State directory [/var/lib/shopedge]:", str(state)),
            ("[sandbox]:", ""),
            ("LINE Pay API base (empty = LINE Pay) [empty]:", line.linepay),
            ("LINE Pay channel id (10 digits) [empty]:", CHANNEL_ID),
            ("LINE Pay channel secret [empty]:", CHANNEL_SECRET),
            ("device profile id (terminal) [empty]:", ""),
            ("Messaging API base (empty = api.line.me) [empty]:", line.messaging),
            ("LINE channel access token [empty]:", "a-typo-in-the-token"),
            ("LINE channel secret [empty]:", ""),
            ("basic id (@...) [empty]:", ""),
            ("MQTT broker host [127.0.0.1]:", ""),
            ("MQTT broker port [1883]:", str(broker.port)),
            ("MQTT username [empty]:", MQTT_USER),
            ("MQTT password [empty]:", MQTT_PASSWORD),
            ("(comma separated) [empty]:", ""),
            # The live check finds the bad token and offers to ask again, only for that check.
            ("Re-enter the answers for line_token? [Y/n]:", "y"),
            (f"Messaging API base (empty = api.line.me) [{line.messaging}]:", ""),
            ("LINE channel access token [keep current]:", TOKEN),
        ]
        for prompt, value in answers:
            term.answer(prompt, value)
        return term.finish()
    finally:
        term.kill()


async def test_interactive_provision_re_asks_a_failing_credential(
    tmp_path: Path, broker: Broker, line: Line
) -> None:
    code, out = await asyncio.to_thread(
        _interactive_provision, tmp_path / "etc", tmp_path / "state", broker, line
    )
    assert code == 0, out
    assert out.count("PASS  line_token") == 1 and "PASS  linepay" in out and "PASS  broker" in out
    assert "a-typo-in-the-token" not in out and TOKEN not in out
    code, rows = await _doctor(tmp_path / "etc" / "config.toml")
    assert rows["line_token"]["status"] == "pass"


async def test_clock_far_from_lines_clock_fails(tmp_path: Path) -> None:
    """A server whose Date header is two hours ahead: the local clock is two hours behind."""
    from email.utils import formatdate

    from agent.config import parse_config
    from agent.doctor import Environment, Status, check_clock

    async def head(request: web.Request) -> web.Response:
        return web.Response(status=404, headers={"Date": formatdate(time.time() + 7200, usegmt=True)})

    app = web.Application()
    app.router.add_route("HEAD", "/", head)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        config = parse_config(
            {"device": {"store_id": "s", "device_id": "d"}, "line": {"api_base": f"http://127.0.0.1:{port}"}},
            environ={},
        )
        row = await check_clock(config, Environment())
    finally:
        await runner.cleanup()
    assert row.status is Status.FAIL, row
    assert "-7200 s from LINE's clock" in row.detail or "-7199 s from LINE's clock" in row.detail
