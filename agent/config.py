"""Configuration: one TOML file (plus an optional secrets file and SHOPEDGE_* variables)
loaded into pydantic models.

Owns the schema of every key, its default and its validation. A bad file never produces a
traceback: `load_config` raises `ConfigError` whose `problems` are one line each, naming the
file, the dotted key and what is wrong ("linepay.channel_id: must be 10 digits, got 'abc'").

Each section is its own model so that a capability's keys live together; every model forbids
unknown keys so that a typo is reported instead of silently ignored.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

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
]

from drivers.ble.beacon_config import BeaconConfig
from membership.greeting import GreetingConfig

ENV_PREFIX = "SHOPEDGE_"
_HOSTPORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})$")
_HWID = re.compile(r"^[0-9a-f]{10}$")


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one printable line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_listen(value: str) -> str:
    match = _HOSTPORT.match(value)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, got {value!r}")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """Split a validated HOST:PORT into its parts (brackets removed from IPv6 hosts)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class DeviceConfig(_Section):
    """Who this device is: every record it sends is attributed to store and device."""

    store_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    device_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    name: Annotated[str, Field(min_length=1, max_length=64)] = "ShopEdge counter"


class StorageConfig(_Section):
    """Where state lives (the SQLite database) and how much disk it may take."""

    state_dir: Path = Path("/var/lib/shopedge")
    disk_budget_mb: Annotated[int, Field(ge=10, le=100_000)] = 200
    outbox_max_attempts: Annotated[int, Field(ge=1, le=1000)] = 10


class POSConfig(_Section):
    """The local HTTP API the till talks to."""

    listen: str = "127.0.0.1:8737"
    token: SecretStr = SecretStr("")
    max_amount_twd: Annotated[int, Field(gt=0)] = 200_000
    scanner: Literal["none", "evdev", "replay"] = "none"
    scanner_device: str = ""
    scanner_replay_file: Path | None = None

    _listen = field_validator("listen")(_check_listen)

    @model_validator(mode="after")
    def _scanner_source(self) -> POSConfig:
        if self.scanner == "evdev" and not self.scanner_device:
            raise ValueError('scanner_device: required with scanner = "evdev" (a /dev/input/by-id/ path)')
        if self.scanner == "replay" and self.scanner_replay_file is None:
            raise ValueError('scanner_replay_file: required with scanner = "replay"')
        return self


class LinePayConfig(_Section):
    """LINE Pay merchant credentials (offline v4 and online v3 APIs)."""

    mode: Literal["sandbox", "production"] = "sandbox"
    api_base: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")] | None = None
    channel_id: str = ""
    channel_secret: SecretStr = SecretStr("")
    merchant_device_profile_id: Annotated[str, Field(max_length=100)] = ""
    merchant_device_type: Annotated[str, Field(max_length=100)] = "POS"
    fee_rate: Annotated[float, Field(ge=0, lt=1)] = 0.022

    @field_validator("channel_id")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"\d{10}", value):
            raise ValueError(f"must be 10 digits, got {value!r}")
        return value


class LineConfig(_Section):
    """LINE Official Account (Messaging API) credentials and identity."""

    api_base: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$")] | None = None
    channel_access_token: SecretStr = SecretStr("")
    channel_secret: SecretStr = SecretStr("")
    oa_basic_id: Annotated[str, Field(pattern=r"^(@?[0-9a-z._-]{3,32})?$")] = ""
    liff_id: Annotated[str, Field(pattern=r"^([0-9]{10}-[A-Za-z0-9]{8})?$")] = ""

    @field_validator("oa_basic_id")
    @classmethod
    def _strip_at(cls, value: str) -> str:
        return value.removeprefix("@")


class MQTTConfig(_Section):
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

    @model_validator(mode="after")
    def _cert_pair(self) -> MQTTConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ValueError("ca_file/cert_file are set but tls = false (set tls = true)")
        return self


class BLEConfig(_Section):
    """Bluetooth LE scanning."""

    enabled: bool = True
    driver: Literal["bleak", "replay"] = "bleak"
    adapter: Annotated[str, Field(pattern=r"^hci\d{1,2}$")] = "hci0"
    scanning_mode: Literal["active", "passive"] = "active"
    replay_file: Path | None = None
    replay_speed: Annotated[float, Field(gt=0, le=1000)] = 1.0
    replay_loop: bool = True
    store_beacon_hwids: list[str] = Field(default_factory=list)
    beacon_silent_after_s: Annotated[float, Field(gt=0)] = 300.0

    @field_validator("store_beacon_hwids")
    @classmethod
    def _hwids(cls, value: list[str]) -> list[str]:
        out = []
        for hwid in value:
            hwid = hwid.lower()
            if not _HWID.match(hwid):
                raise ValueError(f"each HWID must be 10 hex digits, got {hwid!r}")
            out.append(hwid)
        return out


class PresenceConfig(_Section):
    """Presence engine thresholds (RSSI in dBm, times in seconds)."""

    enter_rssi: Annotated[int, Field(ge=-127, le=0)] = -75
    exit_rssi: Annotated[int, Field(ge=-127, le=0)] = -85
    enter_sightings: Annotated[int, Field(ge=1, le=100)] = 3
    away_after_s: Annotated[float, Field(gt=0)] = 30.0
    stay_interval_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _hysteresis(self) -> PresenceConfig:
        if self.exit_rssi > self.enter_rssi:
            raise ValueError("exit_rssi must be at or below enter_rssi (hysteresis)")
        return self


class DisplayConfig(_Section):
    """The customer-facing display."""

    driver: Literal["web", "png", "framebuffer", "window"] = "web"
    size: str = "800x480"
    language: Literal["zh-TW", "en"] = "zh-TW"
    listen: str = "127.0.0.1:8738"
    png_path: Path | None = None
    framebuffer: Annotated[str, Field(pattern=r"^fb\d{1,2}$")] = "fb0"
    font_path: Path | None = None
    fullscreen: bool = True

    _listen = field_validator("listen")(_check_listen)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{3,4})x(\d{3,4})", value)
        if not match or not (240 <= int(match[1]) <= 4096 and 240 <= int(match[2]) <= 4096):
            raise ValueError(f"must be WIDTHxHEIGHT between 240 and 4096, got {value!r}")
        return value

    @property
    def dimensions(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)


class BindingConfig(_Section):
    """Membership-binding tokens shown as a QR after payment."""

    key: SecretStr = SecretStr("")
    ttl_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 1800
    phone_salt: SecretStr = SecretStr("")
    # When the display cannot say what it shows: "joined" only while the QR is this young.
    joined_window_s: Annotated[float, Field(gt=0, le=3600)] = 120.0


class RelayConfig(_Section):
    """The cloud webhook relay (`shopedge relay`), which runs in the merchant's cloud."""

    listen: str = "127.0.0.1:8740"
    beacon_stores: dict[str, str] = Field(default_factory=dict)
    fleet_topic: str = "shopedge/v1/fleet/line_event"
    dedupe_window_s: Annotated[float, Field(ge=60, le=7 * 24 * 3600)] = 24 * 3600
    dedupe_max_events: Annotated[int, Field(ge=1000, le=10_000_000)] = 200_000
    follow_window_s: Annotated[float, Field(ge=0, le=24 * 3600)] = 600

    _listen = field_validator("listen")(_check_listen)

    @field_validator("beacon_stores")
    @classmethod
    def _beacon_stores(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for hwid, target in value.items():
            if not _HWID.match(hwid.lower()):
                raise ValueError(f"each HWID must be 10 hex digits, got {hwid!r}")
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}(/[A-Za-z0-9_-]{1,32})?", target):
                raise ValueError(f"{hwid}: must be STORE_ID or STORE_ID/DEVICE_ID, got {target!r}")
            out[hwid.lower()] = target
        return out

    @field_validator("fleet_topic")
    @classmethod
    def _fleet_topic(cls, value: str) -> str:
        if not value or any(ch in value for ch in "#+\x00") or value.startswith("$"):
            raise ValueError(f"must be an MQTT topic without wildcards, got {value!r}")
        return value


class CampaignConfig(_Section):
    """A coupon campaign (the welcome coupon is the one every store has)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")] = "welcome"
    enabled: bool = True
    coupon_id: str = ""
    title: str = "歡迎禮 Welcome gift"
    starts: str = ""
    ends: str = ""
    monthly_budget: Annotated[int, Field(ge=0)] = 200
    message_cost_twd: Annotated[float, Field(ge=0)] = 0.2
    offer: Annotated[str, Field(min_length=1, max_length=120)] = (
        "下次消費折抵 NT$30 / NT$30 off your next visit"
    )
    valid_days: Annotated[int, Field(ge=1, le=366)] = 30
    coupon_api: bool = False
    discount_twd: Annotated[int, Field(ge=1, le=100_000)] = 30

    @field_validator("starts", "ends")
    @classmethod
    def _date(cls, value: str) -> str:
        if value:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"must be a date YYYY-MM-DD or empty, got {value!r}") from None
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError(f"must be a date YYYY-MM-DD or empty, got {value!r}")
        return value

    @model_validator(mode="after")
    def _order(self) -> CampaignConfig:
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError(f"ends ({self.ends}) is before starts ({self.starts})")
        return self


class TagRuleConfig(_Section):
    """A member tag earned by buying in a category often enough (synced upstream; LINE has no tag API)."""

    tag: Annotated[str, Field(min_length=1, max_length=40)]
    category: Annotated[str, Field(min_length=1, max_length=40)]
    min_purchases: Annotated[int, Field(ge=1, le=1000)] = 3
    window_days: Annotated[int, Field(ge=1, le=366)] = 30


class CouponsConfig(_Section):
    """Welcome-coupon delivery, the funnel report and tag rules."""

    timezone: str = "Asia/Taipei"
    reply_token_ttl_s: Annotated[float, Field(gt=0, le=60)] = 20.0
    quota_cache_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    push_batch: Annotated[int, Field(ge=1, le=500)] = 20
    plan_free_messages: Annotated[int, Field(ge=0)] = 200
    barcode_url: str = ""
    tag_rules: list[TagRuleConfig] = Field(default_factory=list)
    # The funnel's greeted_then_paid: a payment by the greeted shopper within this many hours.
    visit_attribution_h: Annotated[float, Field(gt=0, le=24 * 31)] = 2.0

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"must be an IANA time zone such as 'Asia/Taipei', got {value!r}") from None
        return value

    @field_validator("barcode_url")
    @classmethod
    def _barcode(cls, value: str) -> str:
        if value and (not value.startswith("https://") or "{code}" not in value):
            raise ValueError(f"must be an https:// URL containing {{code}}, got {value!r}")
        return value


class TimeoutsConfig(_Section):
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
