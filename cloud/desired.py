"""Device config from the cloud: desired state per device and key, beside what it reported.

`shopedge cloud config set` records the desired values, then publishes the device's whole
desired document (every key ever set for it, not just this change) on its `down/config`
topic with QoS 1 and retain. Whole and retained, like a device shadow's desired state: a
device that was offline, or lost its session, gets the full state when it subscribes, and a
replayed document is harmless (the device applies it all or nothing and answers again). The
device's reply on `up/reply` (stored by the ingest worker) fills in `reported`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select, update

from base.envelope import Envelope, encode_message, format_ts
from base.mqtt import MQTTConfig
from base.topics import down_topic
from cloud.fleet_db import write_transaction
from cloud.fleet_db.tables import desired_config, devices

__all__ = [
    "ConfigDrift",
    "ConfigPublishError",
    "desired_documents_blocking",
    "drift_blocking",
    "parse_assignments",
    "publish_config_blocking",
    "set_desired_blocking",
    "store_devices_blocking",
]

_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\Z")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")


class ConfigPublishError(RuntimeError):
    """The broker did not take the config message (not connected, refused, or no PUBACK)."""


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a VALUE that is JSON (100, 0.03, true, "zh") is taken as such,
    anything else as a string.

    Raises:
        ValueError: one message naming every bad item.
    """
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            problems.append(f"{item!r}: expected SECTION.KEY=VALUE, e.g. mqtt.batch_max=100")
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, dict | list):
            problems.append(f"{key}: a live key takes a single value, got {raw!r}")
            continue
        out[key] = value
    if problems:
        raise ValueError("; ".join(problems))
    return out


def parse_target(text: str) -> tuple[str, str]:
    store, sep, device = text.partition("/")
    if not sep or not _ID.match(store) or not _ID.match(device):
        raise ValueError(f"expected STORE/DEVICE (ids of A-Z a-z 0-9 _ -), got {text!r}")
    return store, device


def store_devices_blocking(engine: Engine, store_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(devices.c.store_id, devices.c.device_id)
            .where(devices.c.store_id == store_id)
            .order_by(devices.c.device_id)
        )
        return [(r.store_id, r.device_id) for r in rows]


def set_desired_blocking(
    engine: Engine, targets: Sequence[tuple[str, str]], changes: Mapping[str, Any], *, now: float
) -> list[tuple[str, str, Envelope]]:
    """Record the change for each device; returns the whole desired document to publish to each."""
    out = []
    with write_transaction(engine) as conn:
        for store_id, device_id in sorted(set(targets)):
            where = (desired_config.c.store_id == store_id, desired_config.c.device_id == device_id)
            seq = (
                int(
                    conn.execute(
                        select(func.coalesce(func.max(desired_config.c.seq), 0)).where(*where)
                    ).scalar_one()
                )
                + 1
            )
            request_id = str(uuid.uuid4())
            existing = {r.key for r in conn.execute(select(desired_config.c.key).where(*where))}
            for key, value in sorted(changes.items()):
                values = {"desired": value, "set_at": now, "request_id": request_id, "seq": seq}
                if key in existing:
                    conn.execute(
                        update(desired_config).where(*where, desired_config.c.key == key).values(**values)
                    )
                else:
                    conn.execute(
                        desired_config.insert().values(
                            store_id=store_id, device_id=device_id, key=key, **values
                        )
                    )
            conn.execute(  # every key now waits for the device's answer to this document
                update(desired_config)
                .where(*where)
                .values(request_id=request_id, seq=seq, reported_at=None, reported_ok=None)
            )
            document = {r.key: r.desired for r in conn.execute(select(desired_config).where(*where))}
            envelope = Envelope(
                id=request_id, kind="config", ts=format_ts(now), seq=seq, data={"set": document}
            )
            out.append((store_id, device_id, envelope))
    return out


def desired_documents_blocking(engine: Engine) -> list[tuple[str, str, Envelope]]:
    """The current desired document of every device (to republish, e.g. after a broker loss)."""
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                select(desired_config).order_by(desired_config.c.store_id, desired_config.c.device_id)
            )
        )
    docs: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        docs.setdefault((row.store_id, row.device_id), []).append(row)
    out = []
    for (store_id, device_id), items in docs.items():
        head = max(items, key=lambda r: r.seq)
        out.append(
            (
                store_id,
                device_id,
                Envelope(
                    id=head.request_id,
                    kind="config",
                    ts=format_ts(head.set_at),
                    seq=int(head.seq),
                    data={"set": {r.key: r.desired for r in items}},
                ),
            )
        )
    return out


def publish_config_blocking(
    config: MQTTConfig,
    messages: Sequence[tuple[str, str, Envelope]],
    *,
    timeout_s: float = 10.0,
    client_id: str | None = None,
) -> None:
    """Publish each document with QoS 1 + retain and wait for every PUBACK.

    Raises:
        ConfigPublishError: naming the broker and what went wrong.
    """
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"shopedge-config-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv311 if config.protocol == "3.1.1" else paho.MQTTv5,
    )
    if config.username:
        client.username_pw_set(config.username, config.password.get_secret_value() or None)
    if config.tls:
        client.tls_set(
            ca_certs=str(config.ca_file) if config.ca_file else None,
            certfile=str(config.cert_file) if config.cert_file else None,
            keyfile=str(config.key_file) if config.key_file else None,
        )
    where = f"{config.host}:{config.port}"
    try:
        client.connect(config.host, config.port, keepalive=config.keepalive_s)
    except OSError as exc:
        raise ConfigPublishError(f"cannot reach the broker at {where}: {exc}") from None
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise ConfigPublishError(
                    f"the broker at {where} did not accept the connection in {timeout_s:.0f} s"
                )
            time.sleep(0.02)
        infos = [
            client.publish(
                down_topic(store, device, "config"), encode_message([envelope]), qos=1, retain=True
            )
            for store, device, envelope in messages
        ]
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise ConfigPublishError(
                    f"the broker at {where} did not acknowledge the config in {timeout_s:.0f} s"
                )
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass(frozen=True, kw_only=True)
class ConfigDrift:
    store_id: str
    device_id: str
    key: str
    desired: Any
    reported: Any
    state: str  # in_sync | pending | refused | differs
    detail: str
    reported_version: str | None
    set_at: float
    reported_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def drift_blocking(engine: Engine, *, include_in_sync: bool = False) -> list[ConfigDrift]:
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                select(desired_config).order_by(
                    desired_config.c.store_id, desired_config.c.device_id, desired_config.c.key
                )
            )
        )
    out = []
    for row in rows:
        if row.reported_at is None:
            state = "pending"
        elif row.reported_ok is False:
            state = "refused"
        elif row.reported == row.desired:
            state = "in_sync"
        else:
            state = "differs"
        if state == "in_sync" and not include_in_sync:
            continue
        out.append(
            ConfigDrift(
                store_id=row.store_id,
                device_id=row.device_id,
                key=row.key,
                desired=row.desired,
                reported=row.reported,
                state=state,
                detail=row.reported_detail or "",
                reported_version=row.reported_version,
                set_at=row.set_at,
                reported_at=row.reported_at,
            )
        )
    return out
