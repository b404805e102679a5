"""Every device the cloud has seen: presence, version, last event per stream, backlog, gaps.

Online comes from the device's retained status (its last will turns it offline); a device
whose status says online but that has sent nothing for `offline_after_s` is shown offline
too ("silent"), because a broker only fires the will once its keepalive has run out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from cloud.fleet_config import CloudSection
from cloud.fleet_db.tables import devices, quarantine, seq_gaps, stream_positions

__all__ = [
    "DeviceRow",
    "age_text",
    "format_devices",
    "load_devices_blocking",
    "quarantine_count_blocking",
]


@dataclass(frozen=True, kw_only=True)
class DeviceRow:
    store_id: str
    device_id: str
    online: bool
    presence: str  # online | offline | silent | unknown
    since: float | None
    last_seen: float
    first_seen: float
    agent_version: str | None
    outbox_depth: int | None
    health: Mapping[str, Any] | None
    backlogged: bool
    streams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    missing: int = 0
    gaps: Sequence[tuple[str, int, int]] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "device_id": self.device_id,
            "online": self.online,
            "presence": self.presence,
            "since": self.since,
            "last_seen": self.last_seen,
            "first_seen": self.first_seen,
            "agent_version": self.agent_version,
            "outbox_depth": self.outbox_depth,
            "health": dict(self.health) if self.health is not None else None,
            "backlogged": self.backlogged,
            "last_event": {k: dict(v) for k, v in self.streams.items()},
            "seq_missing": self.missing,
            "seq_gaps": [{"stream": s, "first_seq": a, "last_seq": b} for s, a, b in self.gaps],
        }


def presence_of(online: bool | None, last_seen: float, now: float, offline_after_s: float) -> str:
    if online is None:
        return "unknown" if now - last_seen < offline_after_s else "silent"
    if not online:
        return "offline"
    return "online" if now - last_seen < offline_after_s else "silent"


def load_devices_blocking(engine: Engine, *, now: float, config: CloudSection) -> list[DeviceRow]:
    with engine.connect() as conn:
        device_rows = list(conn.execute(select(devices).order_by(devices.c.store_id, devices.c.device_id)))
        streams: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
        missing: dict[tuple[str, str], int] = defaultdict(int)
        for row in conn.execute(select(stream_positions)):
            key = (row.store_id, row.device_id)
            streams[key][row.stream] = {
                "last_seq": int(row.last_seq),
                "last_ts": row.last_ts,
                "envelopes": int(row.envelopes),
                "missing": int(row.missing),
                "rewinds": int(row.rewinds),
            }
            missing[key] += int(row.missing)
        gaps: dict[tuple[str, str], list[tuple[str, int, int]]] = defaultdict(list)
        for row in conn.execute(select(seq_gaps).order_by(seq_gaps.c.stream, seq_gaps.c.first_seq)):
            gaps[(row.store_id, row.device_id)].append((row.stream, int(row.first_seq), int(row.last_seq)))
    out = []
    for row in device_rows:
        key = (row.store_id, row.device_id)
        presence = presence_of(row.online, row.last_seen, now, config.offline_after_s)
        depth = row.outbox_depth
        out.append(
            DeviceRow(
                store_id=row.store_id,
                device_id=row.device_id,
                online=presence == "online",
                presence=presence,
                since=row.status_ts,
                last_seen=row.last_seen,
                first_seen=row.first_seen,
                agent_version=row.agent_version,
                outbox_depth=depth,
                health=row.health,
                backlogged=depth is not None and depth >= config.backlog_warn,
                streams=streams.get(key, {}),
                missing=missing.get(key, 0),
                gaps=gaps.get(key, [])[:50],
            )
        )
    return out


def quarantine_count_blocking(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(quarantine)).scalar_one())


def age_text(now: float, then: float | None, *, suffix: str = " ago") -> str:
    """How long ago `then` was, in the one unit that reads best: `42s ago`, `5m ago`, `3h ago`."""
    if then is None:
        return "-"
    seconds = max(0, int(now - then))
    if seconds < 120:
        return f"{seconds}s{suffix}"
    if seconds < 7200:
        return f"{seconds // 60}m{suffix}"
    if seconds < 172800:
        return f"{seconds // 3600}h{suffix}"
    return f"{seconds // 86400}d{suffix}"


def format_devices(rows: Sequence[DeviceRow], *, now: float, quarantined: int) -> str:
    header = (
        f"{'store':<12} {'device':<12} {'presence':<8} {'since':>9} {'last seen':>9} "
        f"{'version':<9} {'outbox':>6} {'missing':>7}  last event per stream"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        last = ", ".join(
            f"{stream}#{info['last_seq']} {age_text(now, info['last_ts'])}"
            for stream, info in sorted(row.streams.items())
        )
        flag = " BACKLOG" if row.backlogged else ""
        lines.append(
            f"{row.store_id:<12} {row.device_id:<12} {row.presence:<8} {age_text(now, row.since):>9} "
            f"{age_text(now, row.last_seen):>9} {row.agent_version or '-':<9} "
            f"{'-' if row.outbox_depth is None else row.outbox_depth:>6} {row.missing:>7}  {last}{flag}"
        )
    lines.append(f"{len(rows)} device(s); {quarantined} message(s) in quarantine")
    return "\n".join(lines)
