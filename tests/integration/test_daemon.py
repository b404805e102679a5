"""The daemon as a process: starts from the example config, stops cleanly on SIGTERM in < 5 s,
and never writes a secret to its logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _start(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> list[str]:
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not logged; got {lines}")


def _example_with_state(tmp_path: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('state_dir = "/var/lib/shopedge"', f'state_dir = "{tmp_path / "state"}"')
    config = tmp_path / "config.toml"
    config.write_text(text)
    return config


def test_run_starts_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = _example_with_state(tmp_path)
    proc = _start(config, {})
    try:
        lines = _wait_for(proc, '"msg": "health"')
        records = [json.loads(line) for line in lines]
        assert any(r["msg"] == "shopedge started" for r in records)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - started < 5
        assert proc.returncode == 0
        assert "shopedge stopped cleanly" in err
    finally:
        proc.kill()


def test_secrets_never_reach_the_logs(tmp_path: Path) -> None:
    config = _example_with_state(tmp_path)
    secret = "s3cr3t-channel-secret-value"
    token = "pos-bearer-token-9f8e7d"
    proc = _start(config, {"SHOPEDGE_LINEPAY_CHANNEL_SECRET": secret, "SHOPEDGE_POS_TOKEN": token})
    try:
        _wait_for(proc, '"msg": "health"')
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert secret not in out + err and token not in out + err
