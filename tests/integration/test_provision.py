"""`shopedge provision` as a technician runs it: non-interactively into a temp dir (from flags
and from a file), interactively through a pseudo-terminal, and again to show re-running keeps
what works."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config
from agent.db import open_state_db
from agent.state import get_setting
from tests.integration.pty_driver import Terminal

ROOT = Path(__file__).resolve().parents[2]


def _provision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "provision", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _identity(state: Path) -> str | None:
    engine = open_state_db(state / "shopedge.db")
    try:
        return get_setting(engine, "device_identity")
    finally:
        engine.close()


def test_non_interactive_from_flags_then_rerun_keeps_what_works(tmp_path: Path) -> None:
    etc, state = tmp_path / "etc", tmp_path / "state"
    result = _provision(
        "--config-dir",
        str(etc),
        "--non-interactive",
        "--no-check",
        "--store-id",
        "store-7",
        "--state-dir",
        str(state),
        "--set",
        "linepay.channel_id=1234567890",
        "--set",
        "linepay.channel_secret=lp-secret-abcdef",
        "--set",
        "mqtt.port=1999",
    )
    assert result.returncode == 0, result.stderr
    config_file, secrets_file = etc / "config.toml", etc / "secrets.toml"
    assert _mode(config_file) == 0o640 and _mode(secrets_file) == 0o600
    assert "lp-secret-abcdef" not in config_file.read_text()
    config = load_config(config_file)
    assert config.device.store_id == "store-7" and config.mqtt.port == 1999
    assert config.linepay.channel_secret.get_secret_value() == "lp-secret-abcdef"
    key = config.binding.key.get_secret_value()
    assert len(key) >= 40
    identity = _identity(state)
    assert identity and identity in result.stdout
    assert "(new)" in result.stdout and "generated: binding.key" in result.stdout

    # A hand-made edit survives, generated secrets and identity are kept, one answer changes.
    text = config_file.read_text().replace("[mqtt]\n", "[mqtt]\nkeepalive_s = 45\n")
    config_file.write_text(text)
    again = _provision(
        "--config-dir", str(etc), "--non-interactive", "--no-check", "--set", "device.name=Back"
    )
    assert again.returncode == 0, again.stderr
    config = load_config(config_file)
    assert config.binding.key.get_secret_value() == key
    assert config.mqtt.keepalive_s == 45 and config.device.name == "Back"
    assert config.linepay.channel_secret.get_secret_value() == "lp-secret-abcdef"
    assert _identity(state) == identity and "(kept)" in again.stdout
    assert "generated" not in again.stdout


def test_non_interactive_from_a_file(tmp_path: Path) -> None:
    answers = tmp_path / "answers.toml"
    answers.write_text(
        f'[device]\nstore_id = "s-file"\ndevice_id = "till-2"\n[storage]\nstate_dir = "{tmp_path / "st"}"\n'
        '[line]\nchannel_access_token = "tok-from-file-123"\n[ble]\nstore_beacon_hwids = ["0123456789"]\n'
    )
    result = _provision(
        "--config-dir", str(tmp_path / "etc"), "--non-interactive", "--no-check", "--from", str(answers)
    )
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path / "etc" / "config.toml")
    assert config.device.device_id == "till-2"
    assert config.line.channel_access_token.get_secret_value() == "tok-from-file-123"
    assert config.ble.store_beacon_hwids == ["0123456789"]
    assert "tok-from-file-123" in (tmp_path / "etc" / "secrets.toml").read_text()


def test_bad_answer_names_the_key_and_writes_nothing(tmp_path: Path) -> None:
    result = _provision(
        "--config-dir",
        str(tmp_path / "etc"),
        "--non-interactive",
        "--no-check",
        "--store-id",
        "s",
        "--set",
        "linepay.channel_id=abc",
    )
    assert result.returncode == 2
    assert "linepay.channel_id: must be 10 digits, got 'abc'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "etc").exists()


def test_interactive_through_a_pty(tmp_path: Path) -> None:
    etc, state = tmp_path / "etc", tmp_path / "state"
    term = Terminal("provision", "--config-dir", str(etc), "--no-check")
    try:
        term.answer("Store id:", "store-pty")
        term.answer("Device id [counter-1]:", "")
        term.answer("Device name [ShopEdge counter]:", "")
        term.answer("State directory [/var/lib/shopedge]:", str(state))
        term.answer("LINE Pay mode (sandbox/production) [sandbox]:", "")
        term.answer("LINE Pay API base (empty = LINE Pay) [empty]:", "")
        term.answer("LINE Pay channel id (10 digits) [empty]:", "12345")  # wrong: asked again
        term.answer("LINE Pay channel secret [empty]:", "pty-secret-value")
        term.answer("LINE Pay device profile id (terminal) [empty]:", "")
        term.answer("Messaging API base (empty = api.line.me) [empty]:", "")
        term.answer("LINE channel access token [empty]:", "pty-token-value")
        term.answer("LINE channel secret [empty]:", "")
        term.answer("LINE Official Account basic id (@...) [empty]:", "@shop123")
        term.answer("MQTT broker host [127.0.0.1]:", "")
        term.answer("MQTT broker port [1883]:", "1884")
        term.answer("MQTT username [empty]:", "dev1")
        term.answer("MQTT password [empty]:", "mqtt-pw-value")
        term.answer("Store beacon HWIDs (comma separated) [empty]:", "0123456789")
        term.expect("linepay.channel_id: must be 10 digits, got '12345'")
        term.answer("LINE Pay channel id (10 digits) [12345]:", "1234567890")
        code, out = term.finish()
    finally:
        term.kill()
    assert code == 0, out
    # Secrets are read without echo: they never appear on the terminal.
    for secret in ("pty-secret-value", "pty-token-value", "mqtt-pw-value"):
        assert secret not in out
    config = load_config(etc / "config.toml")
    assert config.device.store_id == "store-pty" and config.device.device_id == "counter-1"
    assert config.linepay.channel_id == "1234567890"
    assert config.linepay.channel_secret.get_secret_value() == "pty-secret-value"
    assert config.mqtt.port == 1884 and config.mqtt.username == "dev1"
    assert config.line.oa_basic_id == "shop123"
    assert config.storage.state_dir == state and _identity(state)

    # Re-run: Enter everywhere keeps every answer, including the secrets.
    term = Terminal("provision", "--config-dir", str(etc), "--no-check")
    try:
        term.answer("Store id [store-pty]:", "")
        for _ in range(17):
            term.answer(":", "")
        code, out = term.finish()
    finally:
        term.kill()
    assert code == 0, out
    again = load_config(etc / "config.toml")
    assert again == config


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership needs root")
def test_owner_gets_the_secrets_and_the_state(tmp_path: Path) -> None:
    """As root, the service user owns secrets (0600) and state; config stays root-owned (0640)."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    etc, state = tmp_path / "etc", tmp_path / "state"
    result = _provision(
        "--config-dir",
        str(etc),
        "--non-interactive",
        "--no-check",
        "--owner",
        "nobody",
        "--store-id",
        "s",
        "--state-dir",
        str(state),
    )
    assert result.returncode == 0, result.stderr
    config, secrets = (etc / "config.toml").stat(), (etc / "secrets.toml").stat()
    assert (config.st_uid, config.st_gid) == (0, nobody.pw_gid)
    assert (secrets.st_uid, secrets.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert (etc.stat().st_uid, etc.stat().st_gid) == (0, nobody.pw_gid)
    assert state.stat().st_uid == nobody.pw_uid and (state / "shopedge.db").stat().st_uid == nobody.pw_uid
    bad = _provision("--config-dir", str(etc), "--non-interactive", "--no-check", "--owner", "no-such-user-x")
    assert bad.returncode == 2 and "--owner no-such-user-x: no such user" in bad.stderr
