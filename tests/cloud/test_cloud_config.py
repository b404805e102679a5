"""CLOUD.toml: the example documents every key and loads; bad files give one line per problem."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.fleet_config import CloudConfig, CloudConfigError, load_cloud_config, parse_cloud_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "cloud.example.toml"


def _model_keys(model: type, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys |= _model_keys(annotation, f"{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_example_loads_and_documents_every_key() -> None:
    config = load_cloud_config(EXAMPLE, environ={})
    assert config.cloud.group == "ingest"
    text = EXAMPLE.read_text(encoding="utf-8")
    section = ""
    documented: set[str] = set()
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section = m[1]
        elif m := re.match(r"^#? ?(\w+) = ", line):
            documented.add(f"{section}.{m[1]}")
    assert _model_keys(CloudConfig) <= documented, _model_keys(CloudConfig) - documented


def test_default_database_is_sqlite_in_state_dir(tmp_path: Path) -> None:
    path = tmp_path / "cloud.toml"
    path.write_text('[cloud]\nstate_dir = "fleet"\n', encoding="utf-8")
    config = load_cloud_config(path, environ={})
    assert config.cloud.effective_database_url == f"sqlite:///{tmp_path / 'fleet' / 'fleet.db'}"
    assert config.cloud.client_id("w1") == "shopedge-ingest-w1"


def test_postgres_url_goes_through_psycopg_and_env_wins() -> None:
    config = parse_cloud_config({"cloud": {"database_url": "postgresql://u:p@db/fleet"}}, environ={})
    assert config.cloud.effective_database_url == "postgresql+psycopg://u:p@db/fleet"
    env = {"SHOPEDGE_CLOUD_DATABASE_URL": "postgresql://x@y/z", "SHOPEDGE_HQ_TOKEN": "t" * 20}
    config = parse_cloud_config({}, environ=env)
    assert (
        config.cloud.database_url == "postgresql://x@y/z" and config.hq.token.get_secret_value() == "t" * 20
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[cloud]\ngroup = "a b"', "cloud.group: string should match pattern"),
        ('[cloud]\ndatabase_url = "mysql://u:secret@h/db"', "cloud.database_url: must start with sqlite:///"),
        ("[cloud]\nbatch_max = 0", "cloud.batch_max: input should be greater than or equal to 1, got 0"),
        ("[cloud]\ndb_retry_min_s = 5\ndb_retry_max_s = 1", "cloud: db_retry_max_s must be at least"),
        ("[mqtt]\nport = 0", "mqtt.port: input should be greater than 0, got 0"),
        ('[hq]\ntoken = "short"', "hq.token: must be at least 16 characters"),
        ('[hq]\nlisten = "nowhere"', "hq.listen: must be HOST:PORT"),
        ('[report]\ntimezone = "Mars/Olympus"', "report.timezone: must be an IANA time zone"),
        ("[cloud]\ngruop = 1", "cloud.gruop: unknown key (check the spelling against cloud.example.toml)"),
        ("[cloud\n", "TOML syntax error"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "cloud.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(CloudConfigError) as caught:
        load_cloud_config(path, environ={})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: ") and expected in caught.value.problems[0]
    assert "secret" not in caught.value.problems[0]


def test_cli_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cloud.toml"
    path.write_text('[cloud]\ngroup = "a b"\nbatch_max = 0\n[mqtt]\nport = 70000\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "cloud", "devices", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"config error: {path}: ") for line in lines)
    assert "Traceback" not in done.stderr
