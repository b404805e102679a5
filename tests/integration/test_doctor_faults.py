"""Issue 14, item 8 (doctor): the BLE row checks the capture the daemon really replays, and
every command a doctor hint names is a command `shopedge` has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.config import parse_config
from agent.doctor import Environment, Status
from agent.doctor._device import check_ble
from drivers.ble.replay import DEMO_CAPTURE

DOCTOR = Path(__file__).resolve().parents[2] / "agent" / "doctor"


async def test_replay_without_a_file_checks_the_bundled_capture(tmp_path: Path) -> None:
    config = parse_config(
        {"device": {"store_id": "s1", "device_id": "c1"}, "ble": {"driver": "replay"}}, environ={}
    )
    row = await check_ble(config, Environment())
    assert row.status is Status.PASS, row
    assert row.detail == f"replaying {DEMO_CAPTURE}" and "None" not in row.detail


async def test_replay_of_a_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    config = parse_config(
        {
            "device": {"store_id": "s1", "device_id": "c1"},
            "ble": {"driver": "replay", "replay_file": str(missing)},
        },
        environ={},
    )
    row = await check_ble(config, Environment())
    assert row.status is Status.FAIL and str(missing) in row.detail


def _hinted_commands() -> list[list[str]]:
    commands: list[list[str]] = []
    for source in sorted(DOCTOR.glob("*.py")):
        for match in re.finditer(
            r"`shopedge ([a-z][a-z -]*?)(?: [A-Z0-9<]|`)", source.read_text(encoding="utf-8")
        ):
            commands.append(match.group(1).split())
    return commands


def test_the_doctor_hints_name_commands_that_exist() -> None:
    hinted = _hinted_commands()
    assert ["queue", "dead-letters"] in hinted and ["queue", "retry"] in hinted
    parser = build_parser()
    for words in hinted:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([*words, "--help"])
        assert done.value.code == 0, f"`shopedge {' '.join(words)}` is not a command"
