"""Configuration: one TOML file (plus an optional secrets file and SHOPEDGE_* variables)
loaded into pydantic models.

Owns the schema of every key, its default and its validation. A bad file never produces a
traceback: `load_config` raises `ConfigError` whose `problems` are one line each, naming the
file, the dotted key and what is wrong ("linepay.channel_id: must be 10 digits, got 'abc'").

Each room owns the model of its own section (`pos_bridge.config`, `membership.config`,
`drivers.ble.config`, `drivers.display.config`, `cloud.config`, `base.mqtt`); this module keeps
the device's own sections (`[device]`, `[storage]`, `[timeouts]`), composes them all into
`ShopEdgeConfig` and reports problems. Every model forbids unknown keys so that a typo is
reported instead of silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from base.config import Section, split_listen
from base.mqtt import MQTTConfig
from base.topics import STORE_WIDE
from cloud.config import RelayConfig
from drivers.ble.config import BeaconConfig, BLEConfig, PresenceConfig
from drivers.display.config import DisplayConfig
from membership.config import (
    BindingConfig,
    CampaignConfig,
    CouponsConfig,
    GreetingConfig,
    LineConfig,
    TagRuleConfig,
)
from pos_bridge.config import LinePayConfig, POSConfig

__all__ = [
    "BLEConfig",
    "BeaconConfig",
    "BindingConfig",
    "CampaignConfig",
    "ConfigError",
    "CouponsConfig",
    "DeviceConfig",
    "DisplayConfig",
    "GreetingConfig",
    "LineConfig",
    "LinePayConfig",
    "MQTTConfig",
    "POSConfig",
    "PresenceConfig",
    "RelayConfig",
    "ShopEdgeConfig",
    "StorageConfig",
    "TagRuleConfig",
    "TimeoutsConfig",
    "load_config",
    "parse_config",
    "secret_values",
    "split_listen",
]

ENV_PREFIX = "SHOPEDGE_"


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one printable line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class DeviceConfig(Section):
    """Who this device is: every record it sends is attributed to store and device."""

    store_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    device_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    name: Annotated[str, Field(min_length=1, max_length=64)] = "ShopEdge counter"

    @field_validator("device_id")
    @classmethod
    def _not_store_wide(cls, value: str) -> str:
        if value == STORE_WIDE:
            raise ValueError(f"{STORE_WIDE!r} is reserved for the store-wide downlink; pick another id")
        return value


class StorageConfig(Section):
    """Where state lives (the SQLite database) and how much disk it may take."""

    state_dir: Path = Path("/var/lib/shopedge")
    disk_budget_mb: Annotated[int, Field(ge=10, le=100_000)] = 200
    outbox_max_attempts: Annotated[int, Field(ge=1, le=1000)] = 10


class TimeoutsConfig(Section):
    """Every network call's timeout, in seconds, in one place (LINE's documented minimums)."""

    linepay_connect: Annotated[float, Field(gt=0)] = 5.0
    linepay_pay: Annotated[float, Field(gt=0)] = 40.0
    linepay_request: Annotated[float, Field(gt=0)] = 10.0
    linepay_check: Annotated[float, Field(gt=0)] = 20.0
    linepay_capture: Annotated[float, Field(gt=0)] = 60.0
    line_api: Annotated[float, Field(gt=0)] = 10.0
    mqtt_connect: Annotated[float, Field(gt=0)] = 10.0
    mqtt_publish: Annotated[float, Field(gt=0)] = 10.0
    local: Annotated[float, Field(gt=0)] = 5.0
    # LINE wants the webhook answered within about a second: the relay's PUBACK wait.
    relay_publish: Annotated[float, Field(gt=0, le=10)] = 0.8


class ShopEdgeConfig(BaseModel):
    """The whole configuration of one device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secrets_file: Path | None = None
    device: DeviceConfig
    storage: StorageConfig = StorageConfig()
    pos: POSConfig = POSConfig()
    linepay: LinePayConfig = LinePayConfig()
    line: LineConfig = LineConfig()
    mqtt: MQTTConfig = MQTTConfig()
    ble: BLEConfig = BLEConfig()
    presence: PresenceConfig = PresenceConfig()
    display: DisplayConfig = DisplayConfig()
    binding: BindingConfig = BindingConfig()
    relay: RelayConfig = RelayConfig()
    campaigns: list[CampaignConfig] = Field(default_factory=lambda: [CampaignConfig()])
    coupons: CouponsConfig = CouponsConfig()
    beacon: BeaconConfig = BeaconConfig()
    greetings: list[GreetingConfig] = Field(default_factory=list)
    timeouts: TimeoutsConfig = TimeoutsConfig()

    @field_validator("campaigns")
    @classmethod
    def _unique_campaigns(cls, value: list[CampaignConfig]) -> list[CampaignConfig]:
        names = [campaign.name for campaign in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"campaign names must be unique, repeated: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _greetings(self) -> ShopEdgeConfig:
        names = [greeting.name for greeting in self.greetings]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"greetings: names must be unique, repeated: {', '.join(repeated)}")
        campaigns = {campaign.name for campaign in self.campaigns}
        for i, greeting in enumerate(self.greetings):
            if greeting.campaign and greeting.campaign not in campaigns:
                raise ValueError(
                    f"greetings.{i}.campaign: no [[campaigns]] entry named {greeting.campaign!r}"
                )
        if self.beacon.advertise and not self.binding.key.get_secret_value():
            raise ValueError(
                "beacon.advertise = true needs binding.key: it signs the rotating device message"
            )
        return self

    @property
    def db_path(self) -> Path:
        return self.storage.state_dir / "shopedge.db"


# ---------------------------------------------------------------- loading


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """SHOPEDGE_LINEPAY_CHANNEL_SECRET=x becomes {"linepay": {"channel_secret": "x"}}."""
    sections = {name for name in ShopEdgeConfig.model_fields if name not in {"secrets_file"}}
    out: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section in sections and key:
            out.setdefault(section, {})[key] = value
    return out


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling against config.example.toml)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error" or isinstance(value, dict):
        return message
    return f"{message[:1].lower()}{message[1:]}, got {value!r}"


def _iter_problems(exc: ValidationError, source: str) -> Iterator[str]:
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
        yield f"{source}: {loc}: {_describe(error)}"


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: {what} not found"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: {what} is not readable (permission denied)"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: {what} is a directory, not a file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: {what} is not UTF-8 text ({exc.reason})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax error: {exc}"]) from None


def parse_config(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
) -> ShopEdgeConfig:
    """Validate already-parsed TOML data (plus environment overrides) into a config."""
    merged = _merge(dict(data), _env_overrides(os.environ if environ is None else environ))
    try:
        return ShopEdgeConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(list(_iter_problems(exc, source))) from None


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> ShopEdgeConfig:
    """Load the config file, its secrets file and SHOPEDGE_* variables.

    Relative paths inside the file (state_dir, secrets_file, cert files) are resolved against
    the file's own directory, so a config works wherever it is started from.

    Raises:
        ConfigError: with one line per problem.
    """
    path = Path(path)
    data = _read_toml(path, "config file")
    base = path.resolve().parent
    secrets_name = data.get("secrets_file")
    if secrets_name is not None:
        if not isinstance(secrets_name, str):
            raise ConfigError([f"{path}: secrets_file: must be a path string, got {secrets_name!r}"])
        secrets_path = base / secrets_name
        secrets = _read_toml(secrets_path, "secrets file (secrets_file)")
        if "secrets_file" in secrets:
            raise ConfigError([f"{secrets_path}: secrets_file: not allowed in a secrets file"])
        try:
            config = parse_config(_merge(data, secrets), source=str(path), environ=environ)
        except ConfigError as exc:
            raise ConfigError(
                [_attribute(line, path, secrets_path, secrets) for line in exc.problems]
            ) from None
    else:
        config = parse_config(data, source=str(path), environ=environ)
    return _resolve_paths(config, base)


def _attribute(line: str, path: Path, secrets_path: Path, secrets: Mapping[str, Any]) -> str:
    """Name the secrets file, not the main file, when the faulty key came from it."""
    key = line.split(": ", 2)[1] if line.count(": ") >= 2 else ""
    section, _, name = key.partition(".")
    if isinstance(secrets.get(section), Mapping) and name.split(".")[0] in secrets[section]:
        return line.replace(str(path), str(secrets_path), 1)
    return line


def _resolve_paths(config: ShopEdgeConfig, base: Path) -> ShopEdgeConfig:
    def fix(value: Path | None) -> Path | None:
        return value if value is None or value.is_absolute() else base / value

    storage = config.storage.model_copy(update={"state_dir": fix(config.storage.state_dir)})
    mqtt = config.mqtt.model_copy(
        update={
            "ca_file": fix(config.mqtt.ca_file),
            "cert_file": fix(config.mqtt.cert_file),
            "key_file": fix(config.mqtt.key_file),
        }
    )
    ble = config.ble.model_copy(update={"replay_file": fix(config.ble.replay_file)})
    pos = config.pos.model_copy(update={"scanner_replay_file": fix(config.pos.scanner_replay_file)})
    display = config.display.model_copy(
        update={"png_path": fix(config.display.png_path), "font_path": fix(config.display.font_path)}
    )
    return config.model_copy(
        update={"storage": storage, "mqtt": mqtt, "ble": ble, "display": display, "pos": pos}
    )


def secret_values(config: ShopEdgeConfig) -> list[str]:
    """Every secret string in the config, so the log filter can redact them."""
    found: list[str] = []

    def walk(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                walk(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, BaseModel):
                        walk(item)

    walk(config)
    return found
