"""The `[ble]`/`[presence]` keys this capability reads: defaults and one-line errors naming the key."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config
from agent.wiring.ble import settings_from_config

DEVICE = {"device": {"store_id": "s", "device_id": "d"}}


def test_defaults_make_valid_engine_settings() -> None:
    config = parse_config(DEVICE, environ={})
    assert config.ble.replay_loop is True
    settings = settings_from_config(config)
    assert (settings.enter_rssi, settings.exit_rssi, settings.enter_sightings) == (-75, -85, 3)
    assert settings.store_beacon_hwids == ()


def test_hwids_are_lowercased_and_reach_the_engine() -> None:
    config = parse_config({**DEVICE, "ble": {"store_beacon_hwids": ["ABCDEF0123"]}}, environ={})
    assert settings_from_config(config).store_beacon_hwids == ("abcdef0123",)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            {"ble": {"store_beacon_hwids": ["12345"]}},
            "ble.store_beacon_hwids: each HWID must be 10 hex digits",
        ),
        ({"ble": {"replay_speed": 5000}}, "ble.replay_speed: "),
        ({"ble": {"driver": "hci"}}, "ble.driver: "),
        (
            {"presence": {"enter_rssi": -90, "exit_rssi": -80}},
            "presence: exit_rssi must be at or below enter_rssi",
        ),
    ],
)
def test_errors_name_the_key(section: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**DEVICE, **section}, environ={})
    assert len(info.value.problems) == 1
    assert problem in info.value.problems[0]


def test_wiring_runs_the_ble_component_only_when_enabled() -> None:
    from agent.context import AgentContext
    from agent.wiring import build_components

    for enabled in (True, False):
        config = parse_config({**DEVICE, "ble": {"enabled": enabled}}, environ={})
        names = [c.name for c in build_components(AgentContext(config=config, db=None))]  # type: ignore[arg-type]
        assert ("ble" in names) is enabled
