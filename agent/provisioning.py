"""Provisioning, the pure part: from the existing files and the technician's answers to the
text of the new config and secrets files.

Owns the rules that make `shopedge provision` safe to re-run:
- a key the technician does not answer keeps its current value (answers only add or replace);
- generated secrets (binding key, phone salt, POS token) are created only when absent, so
  printed binding QRs and the till's token keep working;
- every key whose schema type is a secret goes to the secrets file (0600), everything else to
  the config file (0640), so the config can be shown or sent in a support bundle;
- the result is validated with the real schema before anything is written.

No I/O here: the command (`agent.commands.provision`) reads the files, asks the questions,
writes atomically, and runs the live checks.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, SecretStr

from agent.config import ConfigError, ShopEdgeConfig, parse_config
from base.jsonread import JsonInputError, read_json

__all__ = [
    "GENERATED",
    "QUESTIONS",
    "Plan",
    "ProvisionError",
    "Question",
    "apply_answers",
    "coerce",
    "dump_toml",
    "plan",
    "problems_for",
    "secret_keys",
]

SECRETS_NAME = "secrets.toml"

# Secrets provision creates when absent: dotted key -> generator. 32 random bytes each.
GENERATED: dict[str, Callable[[], str]] = {
    "binding.key": lambda: secrets.token_urlsafe(32),
    "binding.phone_salt": lambda: secrets.token_urlsafe(32),
    "pos.token": lambda: secrets.token_urlsafe(32),
}


class ProvisionError(Exception):
    """The answers do not make a valid configuration; `problems` has one line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, kw_only=True)
class Question:
    """One interactive question; `key` is the dotted config key it fills."""

    key: str
    text: str
    default: str = ""
    secret: bool = False
    optional: bool = False


QUESTIONS: tuple[Question, ...] = (
    Question(key="device.store_id", text="店舖代號 Store id"),
    Question(key="device.device_id", text="裝置代號 Device id", default="counter-1"),
    Question(key="device.name", text="裝置名稱 Device name", default="ShopEdge counter"),
    Question(key="storage.state_dir", text="資料目錄 State directory", default="/var/lib/shopedge"),
    Question(key="linepay.mode", text="LINE Pay mode (sandbox/production)", default="sandbox"),
    Question(key="linepay.api_base", text="LINE Pay API base (empty = LINE Pay)", optional=True),
    Question(key="linepay.channel_id", text="LINE Pay channel id (10 digits)", optional=True),
    Question(key="linepay.channel_secret", text="LINE Pay channel secret", secret=True, optional=True),
    Question(
        key="linepay.merchant_device_profile_id", text="LINE Pay device profile id (terminal)", optional=True
    ),
    Question(key="line.api_base", text="Messaging API base (empty = api.line.me)", optional=True),
    Question(key="line.channel_access_token", text="LINE channel access token", secret=True, optional=True),
    Question(key="line.channel_secret", text="LINE channel secret", secret=True, optional=True),
    Question(key="line.oa_basic_id", text="LINE Official Account basic id (@...)", optional=True),
    Question(key="mqtt.host", text="MQTT broker host", default="127.0.0.1"),
    Question(key="mqtt.port", text="MQTT broker port", default="1883"),
    Question(key="mqtt.username", text="MQTT username", optional=True),
    Question(key="mqtt.password", text="MQTT password", secret=True, optional=True),
    Question(key="ble.store_beacon_hwids", text="Store beacon HWIDs (comma separated)", optional=True),
)


def _section_model(section: str) -> type[BaseModel] | None:
    info = ShopEdgeConfig.model_fields.get(section)
    if info is None or not isinstance(info.annotation, type) or not issubclass(info.annotation, BaseModel):
        return None
    return info.annotation


def _annotation(key: str) -> Any:
    section, _, name = key.partition(".")
    model = _section_model(section)
    if model is None or name not in model.model_fields:
        raise ProvisionError([f"{key}: unknown key (check the spelling against config.example.toml)"])
    return model.model_fields[name].annotation


def _required(key: str) -> bool:
    section, _, name = key.partition(".")
    model = _section_model(section)
    return model is not None and name in model.model_fields and model.model_fields[name].is_required()


def secret_keys() -> set[str]:
    """Every dotted key whose schema type is a secret (these go to the secrets file)."""
    found = set()
    for section in ShopEdgeConfig.model_fields:
        model = _section_model(section)
        if model is None:
            continue
        for name, info in model.model_fields.items():
            if info.annotation is SecretStr:
                found.add(f"{section}.{name}")
    return found


def coerce(key: str, raw: str) -> Any:
    """A typed value from the text a technician typed or passed with --set.

    Lists are comma separated; the schema validates the rest (pydantic turns "1883" into an int).
    """
    annotation = _annotation(key)
    text = raw.strip()
    if get_origin(annotation) is list or list in get_args(annotation):
        return [part.strip() for part in text.split(",") if part.strip()]
    if get_origin(annotation) is dict:
        try:
            value = read_json(text, max_bytes=64 * 1024)
        except JsonInputError as exc:
            raise ProvisionError([f"{key}: must be a JSON object, got {raw!r} ({exc})"]) from None
        return value
    return text


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    data.setdefault(section, {})[name] = value


def _get(data: Mapping[str, Any], key: str) -> Any:
    section, _, name = key.partition(".")
    inner = data.get(section)
    return inner.get(name) if isinstance(inner, Mapping) else None


def current_value(data: Mapping[str, Any], key: str) -> Any:
    """The value a key has in already-parsed config data (None when absent)."""
    return _get(data, key)


def apply_answers(existing: Mapping[str, Any], answers: Mapping[str, Any]) -> dict[str, Any]:
    """Existing data with the answers applied; an empty optional answer ("") clears nothing."""
    data: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in existing.items()}
    for key, value in answers.items():
        _annotation(key)
        if value is None:
            continue
        if isinstance(value, str) and value == "" and _get(data, key) not in (None, ""):
            continue
        _set(data, key, value)
    return data


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What provision will write, and what it changed."""

    config: ShopEdgeConfig
    config_text: str
    secrets_text: str
    generated: tuple[str, ...]
    changed: tuple[str, ...]
    kept: tuple[str, ...] = field(default=())


def problems_for(key: str, problems: list[str]) -> list[str]:
    """The problem lines about one dotted key (for re-asking just that question)."""
    return [line for line in problems if f": {key}:" in line or f": {key}." in line]


def plan(existing: Mapping[str, Any], answers: Mapping[str, Any]) -> Plan:
    """Merge, generate missing secrets, validate, and render both files.

    Raises:
        ProvisionError: with one line per problem, each naming the dotted key.
    """
    data = apply_answers(existing, answers)
    data.pop("secrets_file", None)
    for question in QUESTIONS:
        if question.default and _get(data, question.key) is None and _required(question.key):
            _set(data, question.key, coerce(question.key, question.default))
    generated = []
    for key, make in GENERATED.items():
        if not _get(data, key):
            _set(data, key, make())
            generated.append(key)
    try:
        config = parse_config(data, source="config", environ={})
    except ConfigError as exc:
        raise ProvisionError(exc.problems) from None
    values = _set_values(config)
    hidden = secret_keys()
    public: dict[str, Any] = {"secrets_file": SECRETS_NAME}
    private: dict[str, Any] = {}
    for section, body in values.items():
        if not isinstance(body, dict):
            public[section] = body
            continue
        for name, value in body.items():
            target = private if f"{section}.{name}" in hidden else public
            target.setdefault(section, {})[name] = value
    old_values = _plain_data(existing)
    changed = tuple(sorted(key for key in answers if _get(old_values, key) != _get(values, key)))
    kept = tuple(
        sorted(
            f"{section}.{name}"
            for section, body in old_values.items()
            if isinstance(body, Mapping)
            for name in body
            if f"{section}.{name}" not in changed
        )
    )
    return Plan(
        config=config,
        config_text=_HEADER_CONFIG + dump_toml(public),
        secrets_text=_HEADER_SECRETS + dump_toml(private),
        generated=tuple(generated),
        changed=changed,
        kept=kept,
    )


_HEADER_CONFIG = (
    "# ShopEdge configuration, written by `shopedge provision` (re-run it to change answers;\n"
    "# keys you set by hand are kept). Secrets are in the file named by secrets_file.\n"
    "# Every key is described in config.example.toml.\n\n"
)
_HEADER_SECRETS = (
    "# ShopEdge secrets, written by `shopedge provision`. Mode 0600: never copy this file into\n"
    "# a ticket or a chat; `shopedge doctor --bundle` leaves it out.\n\n"
)


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return {
            name: _plain(getattr(value, name))
            for name in type(value).model_fields
            if name in value.model_fields_set
        }
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _plain_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Existing raw data validated section by section when possible, for comparing values."""
    try:
        return _set_values(parse_config(data, environ={})) if data.get("device") else dict(data)
    except ConfigError:
        return dict(data)


def _set_values(config: ShopEdgeConfig) -> dict[str, Any]:
    """The keys that were explicitly set (defaults stay implicit), as plain TOML values."""
    out = {}
    for name in type(config).model_fields:
        if name in config.model_fields_set and name != "secrets_file":
            out[name] = _plain(getattr(config, name))
    return out


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes, \\uXXXX included).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML for ShopEdge's shapes: top-level scalars, tables of scalars, arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            arrays.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_scalar(value)}")
    for key, body in tables:
        lines += ["", f"[{_key(key)}]"]
        lines += [f"{_key(k)} = {_scalar(v)}" for k, v in body.items()]
    for key, items in arrays:
        for body in items:
            lines += ["", f"[[{_key(key)}]]"]
            lines += [f"{_key(k)} = {_scalar(v)}" for k, v in body.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
