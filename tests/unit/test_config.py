"""Config loading: good files load; each broken file gives one line naming the key, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_config, secret_values

ROOT = Path(__file__).resolve().parents[2]
BASE = '[device]\nstore_id = "s1"\ndevice_id = "d1"\n'


def test_example_config_loads_with_defaults() -> None:
    config = load_config(ROOT / "config.example.toml", environ={})
    assert config.pos.listen == "127.0.0.1:8737"
    assert config.display.dimensions == (800, 480)
    assert config.campaigns[0].name == "welcome"


def test_relative_paths_resolve_against_the_config_file(config_file: Path) -> None:
    config = load_config(config_file, environ={})
    assert config.storage.state_dir == config_file.parent / "state"
    assert config.db_path == config_file.parent / "state" / "shopedge.db"


def test_secrets_file_and_environment_are_merged(tmp_path: Path) -> None:
    (tmp_path / "secrets.toml").write_text(
        '[linepay]\nchannel_secret = "from-file"\n[pos]\ntoken = "tok-file"\n'
    )
    (tmp_path / "c.toml").write_text('secrets_file = "secrets.toml"\n' + BASE)
    config = load_config(tmp_path / "c.toml", environ={"SHOPEDGE_POS_TOKEN": "tok-env"})
    assert config.linepay.channel_secret.get_secret_value() == "from-file"
    assert config.pos.token.get_secret_value() == "tok-env"
    assert set(secret_values(config)) == {"from-file", "tok-env"}
    assert "from-file" not in repr(config)


def test_environment_keys_with_underscores() -> None:
    config = parse_config(
        {"device": {"store_id": "s", "device_id": "d"}},
        environ={"SHOPEDGE_LINEPAY_CHANNEL_ID": "1234567890", "OTHER": "x"},
    )
    assert config.linepay.channel_id == "1234567890"


BROKEN = {
    "missing_key": ('[device]\nstore_id = "s1"\n', "device.device_id: missing required key"),
    "missing_section": ('[storage]\nstate_dir = "x"\n', "device: missing required key"),
    "wrong_type": (BASE + '[mqtt]\nport = "eighty"\n', "mqtt.port: input should be a valid integer"),
    "unknown_key": (BASE + '[pos]\nlisten = "127.0.0.1:8737"\ntokn = "x"\n', "pos.tokn: unknown key"),
    "unknown_section": (BASE + '[printer]\nmodel = "x"\n', "printer: unknown key"),
    "bad_syntax": (BASE + "[pos\nlisten = 1\n", "TOML syntax error"),
    "channel_id": (
        BASE + '[linepay]\nchannel_id = "abc"\n',
        "linepay.channel_id: must be 10 digits, got 'abc'",
    ),
    "bad_enum": (BASE + '[display]\ndriver = "hdmi"\n', "display.driver: input should be 'web', 'png'"),
    "bad_listen": (BASE + '[pos]\nlisten = "localhost"\n', "pos.listen: must be HOST:PORT"),
    "bad_hwid": (
        BASE + '[ble]\nstore_beacon_hwids = ["xyz"]\n',
        "ble.store_beacon_hwids: each HWID must be 10 hex",
    ),
    "hysteresis": (
        BASE + "[presence]\nenter_rssi = -90\nexit_rssi = -70\n",
        "presence: exit_rssi must be at or below",
    ),
    "cert_without_key": (
        BASE + '[mqtt]\ncert_file = "c.pem"\n',
        "mqtt: cert_file and key_file must be given together",
    ),
    "bad_size": (BASE + '[display]\nsize = "big"\n', "display.size: must be WIDTHxHEIGHT"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_config_names_the_key(tmp_path: Path, name: str) -> None:
    text, expected = BROKEN[name]
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    problems = info.value.problems
    assert any(expected in line for line in problems), problems
    assert all(line.startswith(str(path)) for line in problems)


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE + "[pos\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "line 4" in info.value.problems[0]


def test_several_problems_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[device]\nstore_id = "s"\n[mqtt]\nport = 0\n[linepay]\nmode = "live"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    keys = sorted(line.split(": ")[1] for line in info.value.problems)
    assert keys == ["device.device_id", "linepay.mode", "mqtt.port"]


def test_unreadable_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[pos]\ntoken = "x"\n')
    secrets.chmod(0)
    path = tmp_path / "c.toml"
    path.write_text('secrets_file = "secrets.toml"\n' + BASE)
    if os.geteuid() == 0:
        # root reads anything: use a directory in its place to get an unreadable secrets file.
        secrets.unlink()
        secrets.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "secrets file (secrets_file)" in info.value.problems[0]


def test_missing_secrets_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('secrets_file = "nope.toml"\n' + BASE)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems == [f"{tmp_path / 'nope.toml'}: secrets file (secrets_file) not found"]


def test_bad_value_in_secrets_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "secrets.toml").write_text('[linepay]\nchannel_id = "12"\n')
    path = tmp_path / "c.toml"
    path.write_text('secrets_file = "secrets.toml"\n' + BASE)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems[0].startswith(f"{tmp_path / 'secrets.toml'}: linepay.channel_id:")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml", environ={})
    assert "config file not found" in info.value.problems[0]


def test_cli_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[device]\nstore_id = "s"\n[linepay]\nchannel_id = "abc"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"config error: {path}: device.device_id: missing required key",
        f"config error: {path}: linepay.channel_id: must be 10 digits, got 'abc'",
    ]
    assert "Traceback" not in proc.stderr
