"""`shopedge ble decode` as a technician runs it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ble(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "ble", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_decode_prints_frames_as_json() -> None:
    result = _ble("decode", "02 01 06 03 03 6f fe 0b 16 6f fe 02 01 23 45 67 89 7f 00")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"kind": "line-simple-beacon", "hwid": "0123456789", "device_message": "00"}
    ]


def test_decode_ibeacon() -> None:
    result = _ble("decode", "0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
    assert result.returncode == 0, result.stderr
    [frame] = json.loads(result.stdout)
    assert frame == {
        "kind": "ibeacon",
        "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
        "major": 1,
        "minor": 2,
        "tx_power": -59,
    }


def test_decode_nothing_exits_1_with_a_message() -> None:
    result = _ble("decode", "020106")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no beacon frame" in result.stderr


def test_decode_bad_hex_and_truncated_payload() -> None:
    bad = _ble("decode", "zz")
    assert bad.returncode == 1
    assert "not hex" in bad.stderr
    truncated = _ble("decode", "05ff4c00")
    assert truncated.returncode == 1
    assert "malformed" in truncated.stderr


def test_record_reports_the_scanner_state_and_never_hangs(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    result = _ble("record", "--out", str(out), "--seconds", "2")
    assert out.exists()
    if result.returncode == 0:  # a machine with a working adapter
        assert "wrote" in result.stderr
    else:
        assert result.returncode == 1
        assert "nothing recorded: the scanner is down (red:" in result.stderr
    assert "Traceback" not in result.stderr


def test_record_with_a_missing_explicit_config_is_a_config_error(tmp_path: Path) -> None:
    result = _ble("record", "--out", str(tmp_path / "x.jsonl"), "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "config error" in result.stderr


def test_record_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "rec.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "ble", "record", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode in (0, 1), err
    assert "Traceback" not in err
    assert "wrote" in err
    assert out.read_text(encoding="utf-8").startswith("# ShopEdge BLE capture")
