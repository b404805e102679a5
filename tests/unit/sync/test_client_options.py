"""Session options built from [mqtt] (pure): persistent session, will, TLS, credentials."""

from __future__ import annotations

from pathlib import Path

import aiomqtt
import pytest

from agent.config import ConfigError, parse_config
from agent.sync._client import Will, client_options

WILL = Will(topic="shopedge/v1/s/d/status", payload=b'{"state":"offline"}')


def mqtt(**keys: object):  # type: ignore[no-untyped-def]
    return parse_config({"device": {"store_id": "s", "device_id": "d"}, "mqtt": keys}, environ={}).mqtt


def test_v5_uses_clean_start_off_and_session_expiry() -> None:
    options = client_options(
        mqtt(session_expiry_s=3600), client_id="d", protocol="5", will=WILL, connect_timeout=4
    )
    assert options["identifier"] == "d"
    assert options["protocol"] is aiomqtt.ProtocolVersion.V5
    assert options["clean_start"] is False
    assert options["properties"].SessionExpiryInterval == 3600
    assert options["will"].retain is True and options["will"].qos == 1 and options["will"].topic == WILL.topic
    assert options["max_inflight_messages"] == 20
    assert options["timeout"] == 4
    assert "username" not in options and "tls_params" not in options


def test_v311_uses_clean_session_off() -> None:
    options = client_options(mqtt(), client_id="d", protocol="3.1.1", will=WILL, connect_timeout=4)
    assert options["protocol"] is aiomqtt.ProtocolVersion.V311
    assert options["clean_session"] is False
    assert "properties" not in options


def test_tls_and_credentials(tmp_path: Path) -> None:
    options = client_options(
        mqtt(
            tls=True,
            ca_file=str(tmp_path / "ca.crt"),
            cert_file="c.crt",
            key_file="c.key",
            username="s",
            password="pw",
        ),
        client_id="d",
        protocol="5",
        will=WILL,
        connect_timeout=4,
    )
    assert options["username"] == "s" and options["password"] == "pw"
    tls = options["tls_params"]
    assert tls.ca_certs == str(tmp_path / "ca.crt") and tls.certfile == "c.crt" and tls.keyfile == "c.key"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "reconnect_max_s must be at least reconnect_min_s"),
        ({"ca_file": "ca.crt"}, "tls = false"),
        ({"cert_file": "c.crt"}, "cert_file and key_file must be given together"),
        ({"protocol": "4"}, "mqtt.protocol"),
    ],
)
def test_bad_mqtt_settings_are_named(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        mqtt(**keys)
    assert any(message in line for line in error.value.problems), error.value.problems
