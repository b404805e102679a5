"""The merchant's MQTT broker settings (`[mqtt]`): the same keys on the device and in the cloud."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from base.config import Section

__all__ = [
    "MQTTConfig",
    "client_id_for",
]

_CLIENT_ID = r"^(|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$"


class MQTTConfig(Section):
    """The merchant's MQTT broker used for cloud sync."""

    enabled: bool = True
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 1883
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str = ""
    password: SecretStr = SecretStr("")
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = 20
    batch_max: Annotated[int, Field(ge=1, le=1000)] = 50
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # The MQTT client id; empty: `shopedge-{store_id}-{device_id}` (see `client_id_for`).
    client_id: Annotated[str, Field(pattern=_CLIENT_ID)] = ""
    # The largest MQTT message the uplink sends (Mosquitto's message_size_limit, AWS IoT's
    # 128 KiB): a bigger record is a dead letter, never a publish that makes the broker hang up.
    max_message_bytes: Annotated[int, Field(ge=1024, le=268_435_455)] = 256 * 1024

    @model_validator(mode="after")
    def _cert_pair(self) -> MQTTConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ValueError("ca_file/cert_file are set but tls = false (set tls = true)")
        return self


def client_id_for(config: MQTTConfig, store_id: str, device_id: str) -> str:
    """The client id a device connects with: `mqtt.client_id`, else one unique per store and
    device. A broker allows one connection per client id, so two stores that each have a
    `counter-1` on one broker would otherwise take the id from each other in a loop."""
    return config.client_id or f"shopedge-{store_id}-{device_id}"
