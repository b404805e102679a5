"""The presence engine: beacon enter/stay/leave, store beacon health and footfall, as pure logic.

Owns every presence decision and no I/O: it is fed adverts (`observe`) and clock ticks
(`tick`) with explicit times, and returns events. Deadlines (leave, stay heartbeat, silent
store beacon, footfall bucket end) are decided by `tick`, so total radio silence still
produces `leave` and `beacon_silent`; the engine never waits for a next advert to notice an
absence (the Theengs Gateway failure in the reference brief).

RSSI filter: a windowed trimmed mean (last `RSSI_WINDOW` samples within `away_after_s`,
25 % trimmed from each end). Indoor RSSI noise is not Gaussian: people and shelves cause deep
fades of 10-20 dB and the odd reflection spike. A Kalman filter (room-assistant) assumes
Gaussian noise, so every fade drags its estimate and its two noise constants need tuning per
site; a median ignores outliers but jumps in 1 dB steps between samples. The trimmed mean
discards the fades and spikes like a median (up to 25 % outliers per side) and averages the
rest, so it follows a walk-up within a few adverts with no constants to tune.

Privacy: footfall counts distinct devices per 5-minute bucket from keyed BLAKE2b hashes of
the address under a random salt that rotates at local midnight and exists only in memory.
Raw addresses are hashed on arrival and never kept; only bucket counts leave the engine.

Payloads (outbox telemetry; `ts` is epoch seconds):
- stream `presence`: `{"kind": "enter"|"stay"|"leave", "beacon": "line:0123456789",
  "beacon_kind": "line-simple-beacon", "rssi": -61.5, "present_s": 12.0, "ts": ...}` and
  `{"kind": "footfall", "bucket_start": ..., "bucket_s": 300, "devices": 14, "partial": false, "ts": ...}`;
- stream `beacon_health`: `{"kind": "beacon_silent"|"beacon_restored", "hwid": "0123456789",
  "unseen_s": 300.0, "ts": ...}`.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from drivers.ble.const import (
    FOOTFALL_BUCKET_S,
    FOOTFALL_DAY_OFFSET_S,
    FOOTFALL_SALT_BYTES,
    RSSI_TRIM,
    RSSI_WINDOW,
)
from drivers.ble.frames import Frame

__all__ = [
    "BeaconHealthEvent",
    "Event",
    "FootfallEvent",
    "PresenceEngine",
    "PresenceEvent",
    "PresenceSettings",
    "trimmed_mean",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class PresenceSettings:
    """The engine's thresholds (see `[presence]` and `[ble]` in config.example.toml)."""

    enter_rssi: int = -75
    exit_rssi: int = -85
    enter_sightings: int = 3
    away_after_s: float = 30.0
    stay_interval_s: float = 60.0
    store_beacon_hwids: tuple[str, ...] = ()
    beacon_silent_after_s: float = 300.0
    footfall_bucket_s: int = FOOTFALL_BUCKET_S

    def __post_init__(self) -> None:
        if self.exit_rssi > self.enter_rssi:
            raise ValueError("exit_rssi must be at or below enter_rssi (hysteresis)")
        if self.enter_sightings < 1:
            raise ValueError("enter_sightings must be at least 1")
        if min(self.away_after_s, self.stay_interval_s, self.beacon_silent_after_s) <= 0:
            raise ValueError("away_after_s, stay_interval_s and beacon_silent_after_s must be positive")
        if self.footfall_bucket_s <= 0:
            raise ValueError("footfall_bucket_s must be positive")


@dataclass(frozen=True, kw_only=True, slots=True)
class PresenceEvent:
    """A known beacon arrived (`enter`), is still here (`stay`) or went away (`leave`)."""

    stream: ClassVar[str] = "presence"
    kind: Literal["enter", "stay", "leave"]
    beacon: str
    beacon_kind: str
    rssi: float | None
    present_s: float
    at: float

    def payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "beacon": self.beacon,
            "beacon_kind": self.beacon_kind,
            "rssi": None if self.rssi is None else round(self.rssi, 1),
            "present_s": round(self.present_s, 1),
            "ts": self.at,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class BeaconHealthEvent:
    """One of this store's LINE Beacons went silent or came back."""

    stream: ClassVar[str] = "beacon_health"
    kind: Literal["beacon_silent", "beacon_restored"]
    hwid: str
    unseen_s: float
    at: float

    def payload(self) -> dict[str, Any]:
        return {"kind": self.kind, "hwid": self.hwid, "unseen_s": round(self.unseen_s, 1), "ts": self.at}


@dataclass(frozen=True, kw_only=True, slots=True)
class FootfallEvent:
    """Distinct devices heard in one bucket; `partial` when the agent did not watch all of it."""

    stream: ClassVar[str] = "presence"
    bucket_start: float
    bucket_s: int
    devices: int
    partial: bool

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "footfall",
            "bucket_start": self.bucket_start,
            "bucket_s": self.bucket_s,
            "devices": self.devices,
            "partial": self.partial,
            "ts": self.bucket_start + self.bucket_s,
        }


Event = PresenceEvent | BeaconHealthEvent | FootfallEvent


def trimmed_mean(samples: Sequence[int]) -> float:
    """Mean of the samples after dropping a quarter (at most `RSSI_TRIM`) from each end."""
    ordered = sorted(samples)
    trim = min(RSSI_TRIM, len(ordered) // 4)
    kept = ordered[trim : len(ordered) - trim]
    return sum(kept) / len(kept)


@dataclass(slots=True)
class _Beacon:
    kind: str
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RSSI_WINDOW))
    sightings: int = 0
    present: bool = False
    entered_at: float = 0.0
    last_seen: float = 0.0
    last_near: float = 0.0
    next_stay: float = 0.0
    rssi: float | None = None


@dataclass(slots=True)
class _StoreBeacon:
    watch_from: float
    last_seen: float | None = None
    silent: bool = False


class PresenceEngine:
    """Per-beacon presence state, store beacon watch and the footfall counter.

    Times: `now` is monotonic seconds (deadlines), `wall` is epoch seconds (event stamps and
    footfall buckets). Both are passed in on every call; the engine reads no clock itself.
    """

    def __init__(
        self,
        settings: PresenceSettings,
        *,
        now: float,
        wall: float,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.settings = settings
        self._random_bytes = random_bytes
        self._beacons: dict[str, _Beacon] = {}
        self._store = {hwid: _StoreBeacon(watch_from=now) for hwid in settings.store_beacon_hwids}
        self._store_keys = {f"line:{hwid}": hwid for hwid in settings.store_beacon_hwids}
        self._salt_day = -1
        self._salt = b""
        self._bucket_start = self._bucket_of(wall)
        self._bucket_partial = wall > self._bucket_start
        self._bucket_hashes: set[bytes] = set()
        self._rotate_salt(wall)

    # ------------------------------------------------------------------ inputs

    def observe(
        self, *, now: float, wall: float, address: str, rssi: int, frames: Sequence[Frame]
    ) -> list[Event]:
        """One advert: its frames drive beacon presence, its address (hashed) footfall."""
        events: list[Event] = []
        if wall >= self._bucket_start + self.settings.footfall_bucket_s:
            self._close_bucket(wall, events)
        if not frames:
            self._count_device(address)
            return events
        for frame in frames:
            key = frame.key
            if key is None:
                continue
            hwid = self._store_keys.get(key)
            if hwid is not None:
                self._store_seen(hwid, now, wall, events)
            self._sighting(key, frame.kind, now, wall, rssi, events)
        return events

    def tick(self, *, now: float, wall: float) -> list[Event]:
        """The clock: decides every leave, stay heartbeat, silent beacon and bucket end."""
        events: list[Event] = []
        if wall >= self._bucket_start + self.settings.footfall_bucket_s:
            self._close_bucket(wall, events)
        elif wall < self._bucket_start:
            # The wall clock went back (NTP correcting a Pi without RTC): the open bucket ends
            # here, marked partial, rather than silently absorbing the repeated minutes.
            self._bucket_partial = True
            self._close_bucket(wall, events)
            self._bucket_partial = True
        away = self.settings.away_after_s
        for key, beacon in list(self._beacons.items()):
            if beacon.present:
                if now - beacon.last_near >= away:
                    self._leave(key, beacon, now, wall, events)
                elif now >= beacon.next_stay:
                    beacon.next_stay = now + self.settings.stay_interval_s
                    events.append(self._event("stay", key, beacon, now, wall))
            elif now - beacon.last_seen >= away:
                del self._beacons[key]  # forgotten: a later sighting starts from scratch
        for hwid, store in self._store.items():
            unseen = now - (store.watch_from if store.last_seen is None else store.last_seen)
            if not store.silent and unseen >= self.settings.beacon_silent_after_s:
                store.silent = True
                events.append(BeaconHealthEvent(kind="beacon_silent", hwid=hwid, unseen_s=unseen, at=wall))
        return events

    # ------------------------------------------------------------------ queries

    def present(self) -> list[str]:
        """Keys of the beacons currently present, sorted."""
        return sorted(key for key, beacon in self._beacons.items() if beacon.present)

    def silent_store_beacons(self) -> list[str]:
        """HWIDs of this store's beacons currently reported silent."""
        return sorted(hwid for hwid, store in self._store.items() if store.silent)

    def store_beacons_heard(self) -> dict[str, float]:
        """When each of this store's beacons was last heard (engine clock), if ever."""
        return {hwid: store.last_seen for hwid, store in self._store.items() if store.last_seen is not None}

    def unheard_store_beacons(self) -> list[str]:
        """HWIDs of this store's beacons not heard since start (silent or not yet)."""
        return sorted(hwid for hwid, store in self._store.items() if store.last_seen is None)

    def footfall_so_far(self) -> int:
        """Distinct devices in the current, still open bucket."""
        return len(self._bucket_hashes)

    # ------------------------------------------------------------------ internals

    def _sighting(self, key: str, kind: str, now: float, wall: float, rssi: int, events: list[Event]) -> None:
        settings = self.settings
        beacon = self._beacons.get(key)
        if beacon is None:
            beacon = self._beacons[key] = _Beacon(kind=kind)
        elif beacon.present and now - beacon.last_near >= settings.away_after_s:
            # A late tick: the absence happened before this advert, so it is reported first.
            self._leave(key, beacon, now, wall, events)
        samples = beacon.samples
        while samples and now - samples[0][0] > settings.away_after_s:
            samples.popleft()
        samples.append((now, rssi))
        beacon.last_seen = now
        beacon.rssi = filtered = trimmed_mean([sample for _, sample in samples])
        if beacon.present:
            if filtered >= settings.exit_rssi:
                beacon.last_near = now
            return
        if filtered >= settings.enter_rssi:
            beacon.sightings += 1
            if beacon.sightings >= settings.enter_sightings:
                beacon.present = True
                beacon.entered_at = beacon.last_near = now
                beacon.next_stay = now + settings.stay_interval_s
                events.append(self._event("enter", key, beacon, now, wall))
        else:
            beacon.sightings = 0

    def _leave(self, key: str, beacon: _Beacon, now: float, wall: float, events: list[Event]) -> None:
        events.append(self._event("leave", key, beacon, now, wall))
        beacon.present = False
        beacon.sightings = 0
        beacon.samples.clear()
        beacon.rssi = None

    def _event(
        self, kind: Literal["enter", "stay", "leave"], key: str, beacon: _Beacon, now: float, wall: float
    ) -> PresenceEvent:
        return PresenceEvent(
            kind=kind,
            beacon=key,
            beacon_kind=beacon.kind,
            rssi=beacon.rssi,
            present_s=now - beacon.entered_at,
            at=wall,
        )

    def _store_seen(self, hwid: str, now: float, wall: float, events: list[Event]) -> None:
        store = self._store[hwid]
        if store.silent:
            unseen = now - (store.watch_from if store.last_seen is None else store.last_seen)
            events.append(BeaconHealthEvent(kind="beacon_restored", hwid=hwid, unseen_s=unseen, at=wall))
            store.silent = False
        store.last_seen = now

    def _bucket_of(self, wall: float) -> float:
        size = self.settings.footfall_bucket_s
        return float(int(wall // size) * size)

    def _rotate_salt(self, wall: float) -> None:
        day = int((wall + FOOTFALL_DAY_OFFSET_S) // 86400)
        if day != self._salt_day:
            self._salt_day = day
            self._salt = self._random_bytes(FOOTFALL_SALT_BYTES)

    def _count_device(self, address: str) -> None:
        # The salt only changes when a bucket closes: midnight (UTC+8) is a bucket boundary.
        digest = hashlib.blake2b(address.upper().encode(), key=self._salt, digest_size=8).digest()
        self._bucket_hashes.add(digest)

    def _close_bucket(self, wall: float, events: list[Event]) -> None:
        events.append(
            FootfallEvent(
                bucket_start=self._bucket_start,
                bucket_s=self.settings.footfall_bucket_s,
                devices=len(self._bucket_hashes),
                partial=self._bucket_partial,
            )
        )
        self._bucket_hashes = set()
        start = self._bucket_of(wall)
        # A gap (agent stopped, clock jumped) leaves buckets nobody watched: they are not invented.
        self._bucket_partial = start != self._bucket_start + self.settings.footfall_bucket_s and wall > start
        self._bucket_start = start
        self._rotate_salt(wall)
