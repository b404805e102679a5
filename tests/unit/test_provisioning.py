"""Provisioning's pure core: merging answers, generating secrets once, splitting secrets out,
validating with the real schema, and writing TOML that reads back identically."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from agent.config import parse_config
from agent.provisioning import (
    GENERATED,
    ProvisionError,
    apply_answers,
    coerce,
    dump_toml,
    plan,
    problems_for,
    secret_keys,
)

BASE = {"device.store_id": "store-9", "storage.state_dir": "/var/lib/shopedge"}


def _both(result: Any) -> dict[str, Any]:
    public = tomllib.loads(result.config_text)
    private = tomllib.loads(result.secrets_text)
    assert public.pop("secrets_file") == "secrets.toml"
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in public.items()}
    for section, body in private.items():
        merged.setdefault(section, {}).update(body)
    return merged


def test_secret_keys_are_the_secret_typed_fields() -> None:
    keys = secret_keys()
    assert {
        "linepay.channel_secret",
        "line.channel_access_token",
        "mqtt.password",
        "binding.key",
        "pos.token",
    } <= keys
    assert "linepay.channel_id" not in keys and "device.store_id" not in keys


def test_new_device_gets_generated_secrets_only_in_the_secrets_file() -> None:
    result = plan({}, {**BASE, "linepay.channel_secret": "lp-secret-value"})
    assert set(result.generated) == set(GENERATED)
    private = tomllib.loads(result.secrets_text)
    public = tomllib.loads(result.config_text)
    assert private["linepay"]["channel_secret"] == "lp-secret-value"
    assert len(private["binding"]["key"]) >= 40
    assert "lp-secret-value" not in result.config_text
    for key in secret_keys():
        section, name = key.split(".")
        assert name not in public.get(section, {}), key
    assert public["device"] == {"store_id": "store-9", "device_id": "counter-1"}
    config = parse_config(_both(result), environ={})
    assert config == result.config


def test_rerun_keeps_generated_secrets_and_unanswered_keys() -> None:
    first = plan({}, {**BASE, "mqtt.port": coerce("mqtt.port", "1999"), "device.name": "Front"})
    existing = _both(first)
    second = plan(existing, {"device.name": "Back"})
    assert second.generated == ()
    again = _both(second)
    assert again["binding"]["key"] == existing["binding"]["key"]
    assert again["pos"]["token"] == existing["pos"]["token"]
    assert again["mqtt"]["port"] == 1999
    assert second.changed == ("device.name",)
    assert "mqtt.port" in second.kept and "device.name" not in second.kept


def test_an_empty_answer_does_not_clear_a_value() -> None:
    existing = {"device": {"store_id": "s", "device_id": "d"}, "line": {"oa_basic_id": "abc123"}}
    data = apply_answers(existing, {"line.oa_basic_id": ""})
    assert data["line"]["oa_basic_id"] == "abc123"


def test_an_answer_equal_to_the_current_value_is_not_a_change() -> None:
    existing = _both(plan({}, {**BASE, "mqtt.port": 1999}))
    assert plan(existing, {"mqtt.port": coerce("mqtt.port", "1999")}).changed == ()


def test_bad_answers_name_their_key_and_nothing_is_planned() -> None:
    with pytest.raises(ProvisionError) as info:
        plan({}, {**BASE, "linepay.channel_id": "12ab", "mqtt.port": "99999"})
    problems = info.value.problems
    assert problems_for("linepay.channel_id", problems) == [
        "config: linepay.channel_id: must be 10 digits, got '12ab'"
    ]
    assert problems_for("mqtt.port", problems)
    assert not problems_for("device.store_id", problems)


def test_missing_store_id_is_reported() -> None:
    with pytest.raises(ProvisionError, match=r"device\.store_id: missing required key"):
        plan({}, {})


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ProvisionError, match=r"linepay\.chanel_id: unknown key"):
        plan({}, {**BASE, "linepay.chanel_id": "x"})
    with pytest.raises(ProvisionError, match="unknown key"):
        coerce("nosuch.key", "1")


def test_coerce_splits_lists_and_parses_tables() -> None:
    assert coerce("ble.store_beacon_hwids", " 0123456789, abcdefabcd ,") == ["0123456789", "abcdefabcd"]
    assert coerce("relay.beacon_stores", '{"0123456789": "s1"}') == {"0123456789": "s1"}
    with pytest.raises(ProvisionError, match="JSON object"):
        coerce("relay.beacon_stores", "nope")
    assert coerce("mqtt.port", " 1883 ") == "1883"


@pytest.mark.parametrize(
    "data",
    [
        {"a": 'quote " back \\ slash', "b": "中文 店舖", "c": "line1\nline2\ttab"},
        {"t": {"n": 1, "f": 0.25, "yes": True, "no": False, "list": ["x", "y"], "empty": []}},
        {"relay": {"beacon_stores": {"0123456789": "s1", "odd key": "v"}}},
        {"top": "v", "campaigns": [{"name": "welcome", "monthly_budget": 200}, {"name": "b"}]},
    ],
)
def test_dump_toml_round_trips(data: dict[str, Any]) -> None:
    assert tomllib.loads(dump_toml(data)) == data


def test_full_answers_round_trip_through_the_schema() -> None:
    answers = {
        **BASE,
        "linepay.mode": "production",
        "linepay.channel_id": "1234567890",
        "linepay.channel_secret": "s" * 32,
        "line.channel_access_token": "t" * 40,
        "line.oa_basic_id": "@abc123",
        "mqtt.host": "broker.example.com",
        "mqtt.password": "pw-123456",
        "ble.store_beacon_hwids": coerce("ble.store_beacon_hwids", "0123456789"),
    }
    result = plan({}, answers)
    config = parse_config(_both(result), environ={})
    assert config.linepay.mode == "production"
    assert config.line.oa_basic_id == "abc123"
    assert config.mqtt.password.get_secret_value() == "pw-123456"
    assert config.ble.store_beacon_hwids == ["0123456789"]
