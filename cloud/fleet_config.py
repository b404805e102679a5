"""CLOUD.toml: the fleet side's one config file (`[cloud]`, `[mqtt]`, `[hq]`, `[report]`).

Owns the schema of every key, its default and its validation, in the device's style: a bad
file never gives a traceback; `load_cloud_config` raises `CloudConfigError` whose `problems`
are one line each, naming the file, the dotted key and what is wrong. `[mqtt]` is the device's
own `MQTTConfig`, so one broker section reads the same on both sides. `cloud.example.toml`
documents every key.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from base.config import ConfigError, Section, check_listen, check_timezone, iter_problems, read_toml
from base.mqtt import MQTTConfig

__all__ = [
    "CloudConfig",
    "CloudConfigError",
    "CloudSection",
    "HQConfig",
    "ReportConfig",
    "load_cloud_config",
    "parse_cloud_config",
]

_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class CloudConfigError(ConfigError):
    """A CLOUD.toml that cannot be used; `problems` holds one printable line per fault."""


class CloudSection(Section):
    """Where the fleet database is and how an ingest worker joins its group."""

    state_dir: Path = Path("/var/lib/shopedge-cloud")
    database_url: str = ""  # empty: the SQLite file fleet.db in state_dir
    group: Annotated[str, Field(pattern=_NAME)] = "ingest"
    worker_id: Annotated[str, Field(pattern=r"^([A-Za-z0-9_-]{1,64})?$")] = ""
    batch_max: Annotated[int, Field(ge=1, le=10_000)] = 1000
    batch_wait_ms: Annotated[int, Field(ge=0, le=10_000)] = 50
    receive_max: Annotated[int, Field(ge=1, le=65535)] = 2000
    db_retry_min_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    db_retry_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    offline_after_s: Annotated[float, Field(gt=0)] = 900.0
    backlog_warn: Annotated[int, Field(ge=1)] = 500

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "must start with sqlite:///, postgresql:// or postgresql+psycopg:// (or be empty for "
                f"SQLite in state_dir), got {value.split('@')[-1]!r}"
            )
        return value

    @model_validator(mode="after")
    def _retry_order(self) -> CloudSection:
        if self.db_retry_max_s < self.db_retry_min_s:
            raise ValueError("db_retry_max_s must be at least db_retry_min_s")
        return self

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL; PostgreSQL always through psycopg 3."""
        if not self.database_url:
            return f"sqlite:///{self.state_dir / 'fleet.db'}"
        if self.database_url.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
        return self.database_url

    def client_id(self, worker: str | None = None) -> str:
        """A fixed MQTT client id per worker: the broker keeps its session (and its unacked
        messages) across a crash only for the same id."""
        name = worker or self.worker_id or socket.gethostname().split(".")[0]
        return f"shopedge-{self.group}-{name}"[:128]


class HQConfig(Section):
    """The read-only HQ page (`shopedge cloud serve`)."""

    listen: str = "127.0.0.1:8750"
    token: SecretStr = SecretStr("")

    _listen = field_validator("listen")(check_listen)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and len(secret) < 16:
            raise ValueError("must be at least 16 characters (or empty to refuse to serve)")
        return value


class ReportConfig(Section):
    """What the fleet report prices a friend and a message at."""

    timezone: str = "Asia/Taipei"
    fee_rate: Annotated[float, Field(ge=0, lt=1)] = 0.022
    message_cost_twd: Annotated[float, Field(ge=0)] = 0.2
    monthly_message_quota: Annotated[int, Field(ge=0)] = 200
    ad_cost_per_friend_twd: tuple[float, float] = (20.0, 50.0)

    _zone = field_validator("timezone")(check_timezone)


class CloudConfig(Section):
    """The whole CLOUD.toml."""

    cloud: CloudSection = Field(default_factory=CloudSection)
    mqtt: MQTTConfig = Field(default_factory=MQTTConfig)
    hq: HQConfig = Field(default_factory=HQConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)


_ENV = {"SHOPEDGE_CLOUD_DATABASE_URL": ("cloud", "database_url"), "SHOPEDGE_HQ_TOKEN": ("hq", "token")}


def parse_cloud_config(
    data: Mapping[str, Any], *, source: str = "<cloud config>", environ: Mapping[str, str] | None = None
) -> CloudConfig:
    """Validate parsed TOML (plus the two secret variables, which win over the file)."""
    merged: dict[str, Any] = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in data.items()
    }
    for name, (section, key) in _ENV.items():
        value = (os.environ if environ is None else environ).get(name)
        if value is not None:
            current = merged.setdefault(section, {})
            if isinstance(current, dict):
                current[key] = value
    try:
        return CloudConfig.model_validate(merged)
    except ValidationError as exc:
        raise CloudConfigError(list(iter_problems(exc, source, example="cloud.example.toml"))) from None


def load_cloud_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> CloudConfig:
    """Load CLOUD.toml; relative paths (state_dir, cert files) are resolved against its folder.

    Raises:
        CloudConfigError: with one line per problem.
    """
    path = Path(path)
    try:
        data = read_toml(path, "cloud config file")
    except ConfigError as exc:
        raise CloudConfigError(exc.problems) from None
    config = parse_cloud_config(data, source=str(path), environ=environ)
    base = path.resolve().parent

    def fix(value: Path | None) -> Path | None:
        return value if value is None or value.is_absolute() else base / value

    cloud = config.cloud.model_copy(update={"state_dir": fix(config.cloud.state_dir)})
    mqtt = config.mqtt.model_copy(
        update={
            "ca_file": fix(config.mqtt.ca_file),
            "cert_file": fix(config.mqtt.cert_file),
            "key_file": fix(config.mqtt.key_file),
        }
    )
    return config.model_copy(update={"cloud": cloud, "mqtt": mqtt})
