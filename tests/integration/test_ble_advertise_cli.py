"""`shopedge ble advertise` and `ble decode` as a technician runs them (real subprocesses), and
the broadcast itself against the stand-in bluetoothd on a private bus."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.ble.simple_beacon import frame
from membership.beacon_code import Verdict, verify
from tests.conftest import MINIMAL_CONFIG
from tests.integration.fake_bluez import HAVE_DBUS, FakeBluez, private_bus

ROOT = Path(__file__).resolve().parents[2]


def _shopedge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def test_dry_run_prints_lines_example_1_and_decode_reads_it_back() -> None:
    result = _shopedge(
        "ble", "advertise", "--hwid", "32AF519E88", "--message", "0032006900FAFFFF000199FF88", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "02 01 06",
        "03 03 6f fe",
        "17 16 6f fe 02 32 af 51 9e 88 7f 00 32 00 69 00 fa ff ff 00 01 99 ff 88",
        "02010603036ffe17166ffe0232af519e887f0032006900faffff000199ff88",
    ]
    decoded = _shopedge("ble", "decode", result.stdout.splitlines()[-1])
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout) == [
        {"kind": "line-simple-beacon", "hwid": "32af519e88", "device_message": "0032006900faffff000199ff88"}
    ]


def test_dry_run_example_2_pads_to_31_bytes_and_decodes() -> None:
    result = _shopedge("ble", "advertise", "--hwid", "8ADFAF4326", "--message", "20170228", "--dry-run")
    assert result.returncode == 0, result.stderr
    payload = result.stdout.splitlines()[-1]
    assert payload == "02010603036ffe0e166ffe028adfaf43267f20170228" + "00" * 9
    decoded = _shopedge("ble", "decode", payload)
    assert json.loads(decoded.stdout) == [
        {"kind": "line-simple-beacon", "hwid": "8adfaf4326", "device_message": "20170228"}
    ]
    # the structure lines pasted together decode too
    joined = _shopedge("ble", "decode", *result.stdout.splitlines()[:3])
    assert json.loads(joined.stdout) == json.loads(decoded.stdout)


def _config(tmp_path: Path, key: str = "k" * 32) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL_CONFIG + f'\n[binding]\nkey = "{key}"\n', encoding="utf-8")
    return path


def test_without_message_the_rotating_code_is_advertised(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = _shopedge("ble", "advertise", "--hwid", "32af519e88", "--dry-run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    decoded = json.loads(_shopedge("ble", "decode", result.stdout.splitlines()[-1]).stdout)
    dm = bytes.fromhex(decoded[0]["device_message"])
    assert len(dm) == 8
    assert verify(b"k" * 32, bytes.fromhex("32af519e88"), dm, time.time()) in (
        Verdict.CURRENT,
        Verdict.PREVIOUS,
    )


def test_no_key_no_message_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(MINIMAL_CONFIG, encoding="utf-8")
    result = _shopedge("ble", "advertise", "--hwid", "32af519e88", "--dry-run", "--config", str(config))
    assert result.returncode == 2
    assert "binding.key" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--hwid", "32af519e"], "HWID must be 5 bytes"),
        (["--hwid", "nothex0000"], "HWID must be hex"),
        (["--hwid", "32af519e88", "--message", "00" * 14], "1-13 bytes"),
        (["--hwid", "32af519e88", "--message", ""], "1-13 bytes"),
    ],
)
def test_bad_arguments_say_what_is_wrong(args: list[str], needle: str) -> None:
    result = _shopedge("ble", "advertise", *args, "--dry-run")
    assert result.returncode == 2
    assert needle in result.stderr


@pytest.mark.skipif(not HAVE_DBUS, reason="needs dbus-daemon")
async def test_advertises_until_ctrl_c(tmp_path: Path) -> None:
    with private_bus() as address:
        bluez = await FakeBluez(address).start()
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "ble",
            "advertise",
            "--hwid",
            "32af519e88",
            "--message",
            "01",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await bluez.wait_for(lambda: bluez.adverts, within=30)
            assert bluez.only().frame == frame(bytes.fromhex("32af519e88"), b"\x01")
            assert proc.stderr is not None
            said = b""
            async with asyncio.timeout(20):
                while b"advertising LINE Beacon 32af519e88" not in said:
                    said += await proc.stderr.readline()
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(20):
                out, err = await proc.communicate()
            assert proc.returncode == 0, err
            assert out.decode().splitlines()[-1] == "02010603036ffe0b166ffe0232af519e887f01" + "00" * 12
            assert b"stopped" in err
            assert bluez.adverts == {}
            assert bluez.log[-1] == "unregistered"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await bluez.stop()
