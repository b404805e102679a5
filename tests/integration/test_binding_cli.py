"""`shopedge binding url|verify` as a technician runs it (subprocess, real config file)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[device]
store_id = "demo-store"
device_id = "counter-1"
[storage]
state_dir = "state"
[binding]
key = "{key}"
[line]
oa_basic_id = "@123abcde"
"""


def _shopedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_url_then_verify(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(key="k" * 32), encoding="utf-8")
    done = _shopedge("binding", "url", "--order", "A20261123-0042", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["qr_version"] <= 6
    assert info["url_length"] == len(info["url"])
    assert info["expires_at"] - info["issued_at"] == 1800
    text = urllib.parse.unquote(info["url"].split("?", 1)[1])
    ok = _shopedge("binding", "verify", text, "--config", str(config))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "order A20261123-0042" in ok.stdout
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.format(key="z" * 32), encoding="utf-8")
    bad = _shopedge("binding", "verify", info["token"], "--config", str(other))
    assert (bad.returncode, bad.stdout.strip()) == (1, "rejected: bad_signature")


def test_missing_key_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(key=""), encoding="utf-8")
    done = _shopedge("binding", "url", "--order", "1", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("binding error: binding.key is empty")
    assert "Traceback" not in done.stderr
