"""Presence engine scenarios on a fake clock: enter, flapping, silence, store beacon health, footfall."""

from __future__ import annotations

import itertools
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.frames import EddystoneTLM, Frame, IBeacon, LineSimpleBeacon
from drivers.ble.presence import (
    BeaconHealthEvent,
    FootfallEvent,
    PresenceEngine,
    PresenceEvent,
    PresenceSettings,
    trimmed_mean,
)

T0 = 1_000.0
WALL0 = 1_763_856_000.0  # 2025-11-23 00:00 UTC, a bucket boundary
BEACON = IBeacon(uuid="e2c56db5-dffb-48d2-b060-d0f5a71096e0", major=1, minor=2, tx_power=-59)
STORE = LineSimpleBeacon(hwid="0123456789", device_message="00")
SETTINGS = PresenceSettings(
    enter_rssi=-75,
    exit_rssi=-85,
    enter_sightings=3,
    away_after_s=30.0,
    stay_interval_s=60.0,
    store_beacon_hwids=("0123456789",),
    beacon_silent_after_s=300.0,
)


class Rig:
    """The engine plus a fake clock that moves monotonic and wall time together."""

    def __init__(self, settings: PresenceSettings = SETTINGS, wall0: float = WALL0) -> None:
        self.t = T0
        self.wall0 = wall0
        self.salts = 0
        self.engine = PresenceEngine(settings, now=self.t, wall=self.wall, random_bytes=self._salt)

    def _salt(self, n: int) -> bytes:
        self.salts += 1
        return bytes([self.salts]) * n

    @property
    def wall(self) -> float:
        return self.wall0 + (self.t - T0)

    def advance(self, seconds: float) -> list[object]:
        """Move time forward in 1 s ticks, like the component does; returns every tick event."""
        events: list[object] = []
        end = self.t + seconds
        while self.t + 1 <= end + 1e-9:
            self.t += 1
            events += self.engine.tick(now=self.t, wall=self.wall)
        self.t = end
        return events

    def see(self, rssi: int, frame: Frame = BEACON, address: str = "AA:BB:CC:00:00:01") -> list[object]:
        return list(
            self.engine.observe(now=self.t, wall=self.wall, address=address, rssi=rssi, frames=[frame])
        )

    def phone(self, address: str, rssi: int = -70) -> list[object]:
        return list(self.engine.observe(now=self.t, wall=self.wall, address=address, rssi=rssi, frames=[]))


def health(events: list[object]) -> list[object]:
    return [e for e in events if isinstance(e, BeaconHealthEvent)]


def footfall(events: list[object]) -> list[object]:
    return [e for e in events if isinstance(e, FootfallEvent)]


def kinds(events: list[object]) -> list[str]:
    return [e.kind for e in events if isinstance(e, PresenceEvent | BeaconHealthEvent)]


def test_enter_after_the_configured_sightings_above_threshold() -> None:
    rig = Rig()
    assert rig.see(-60) == []
    rig.advance(1)
    assert rig.see(-60) == []
    rig.advance(1)
    [event] = rig.see(-60)
    assert isinstance(event, PresenceEvent)
    assert event.kind == "enter"
    assert event.beacon == "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"
    assert event.beacon_kind == "ibeacon"
    assert event.rssi == -60
    assert event.at == WALL0 + 2
    assert rig.engine.present() == [event.beacon]


def test_a_weak_filtered_sighting_restarts_the_count() -> None:
    rig = Rig(PresenceSettings(enter_sightings=3))
    # filtered: -60 (1), -80 (reset), -73.3 (1), -60 (2), -60 (3: enter). Without the reset
    # the fourth advert would already have entered.
    for rssi in (-60, -100, -60, -60):
        assert rig.see(rssi) == []
        rig.advance(1)
    assert kinds(rig.see(-60)) == ["enter"]


def test_flapping_around_the_enter_threshold_enters_once_and_never_leaves() -> None:
    rig = Rig()
    events: list[object] = []
    for i in range(200):
        events += rig.see(-74 if i % 2 else -76)
        events += rig.advance(1)
    assert kinds(events).count("enter") == 1
    assert "leave" not in kinds(events)
    assert kinds(events).count("stay") == 3  # 200 s present, heartbeat every 60 s


def test_between_exit_and_enter_thresholds_a_present_beacon_stays() -> None:
    rig = Rig()
    for _ in range(3):
        rig.see(-60)
        rig.advance(1)
    events: list[object] = []
    for _ in range(120):
        events += rig.see(-82)  # weaker than enter (-75), stronger than exit (-85)
        events += rig.advance(1)
    assert "leave" not in kinds(events)
    assert rig.engine.present()


def test_below_exit_threshold_the_beacon_leaves_after_away_after() -> None:
    rig = Rig()
    for _ in range(3):
        rig.see(-60)
        rig.advance(1)
    events: list[object] = []
    for _ in range(40):
        events += rig.see(-100)  # still heard, but far away
        events += rig.advance(1)
    assert kinds(events) == ["leave"]
    leave = next(e for e in events if isinstance(e, PresenceEvent))
    assert leave.present_s >= 30


def test_silence_is_decided_by_the_clock_without_any_advert() -> None:
    rig = Rig()
    for _ in range(3):
        rig.see(-60)
        rig.advance(1)
    last_near = rig.t - 1
    assert rig.advance(28) == []  # 29 s after the last sighting: still present
    events = rig.advance(1)  # 30 s: leave, with no advert arriving at all
    assert kinds(events) == ["leave"]
    assert rig.t - last_near == 30
    assert rig.engine.present() == []


def test_a_late_tick_still_reports_leave_before_the_new_sighting() -> None:
    rig = Rig()
    for _ in range(3):
        rig.see(-60)
        rig.advance(1)
    rig.t += 100  # no ticks at all (a stalled loop), then an advert
    events = rig.see(-60)
    assert kinds(events) == ["leave"]
    assert rig.engine.present() == []  # must re-earn enter with fresh sightings
    rig.advance(1)
    rig.see(-60)
    rig.advance(1)
    assert kinds(rig.see(-60)) == ["enter"]


def test_stay_heartbeat_at_the_configured_interval() -> None:
    rig = Rig(PresenceSettings(enter_sightings=1, stay_interval_s=10.0, away_after_s=30.0))
    events: list[object] = rig.see(-60)
    for _ in range(35):
        events += rig.advance(1)
        events += rig.see(-60)
    assert kinds(events) == ["enter", "stay", "stay", "stay"]
    stays = [e for e in events if isinstance(e, PresenceEvent) and e.kind == "stay"]
    assert [e.present_s for e in stays] == [10, 20, 30]


def test_a_deep_fade_does_not_make_a_near_beacon_leave() -> None:
    rig = Rig(PresenceSettings(enter_sightings=1, away_after_s=5.0))
    rig.see(-60)
    events: list[object] = []
    for i in range(60):
        rig.advance(1)
        events += rig.see(-110 if i % 4 == 0 else -62)  # one sample in four in a deep fade
    assert "leave" not in kinds(events)


def test_trimmed_mean_discards_outliers() -> None:
    assert trimmed_mean([-60]) == -60
    assert trimmed_mean([-60, -61, -59, -110]) == pytest.approx(-60.5)
    assert trimmed_mean([-60] * 6 + [-120, -20]) == -60


def test_telemetry_frames_do_not_drive_presence() -> None:
    rig = Rig(PresenceSettings(enter_sightings=1))
    tlm = EddystoneTLM(battery_mv=3000, temperature_c=20.0, adv_count=1, uptime_s=1.0)
    assert rig.see(-50, frame=tlm) == []
    assert rig.engine.present() == []


def test_forgotten_beacons_are_dropped_from_memory() -> None:
    rig = Rig()
    rig.see(-95)
    rig.advance(31)
    assert rig.engine._beacons == {}


# ------------------------------------------------------------------ store beacon health


def test_store_beacon_dies_and_returns() -> None:
    rig = Rig()
    assert rig.see(-70, frame=STORE) == []
    assert health(rig.advance(299)) == []
    [silent] = health(rig.advance(1))
    assert silent == BeaconHealthEvent(
        kind="beacon_silent", hwid="0123456789", unseen_s=300.0, at=WALL0 + 300
    )
    assert rig.engine.silent_store_beacons() == ["0123456789"]
    assert health(rig.advance(600)) == []  # reported once, not every tick
    [restored] = rig.see(-70, frame=STORE)
    assert isinstance(restored, BeaconHealthEvent)
    assert restored.kind == "beacon_restored"
    assert restored.unseen_s == 900.0
    assert rig.engine.silent_store_beacons() == []
    assert health(rig.advance(299)) == []


def test_a_store_beacon_never_heard_is_silent_after_the_threshold_from_start() -> None:
    rig = Rig()
    assert rig.engine.unheard_store_beacons() == ["0123456789"]
    events = health(rig.advance(300))
    assert events == [
        BeaconHealthEvent(kind="beacon_silent", hwid="0123456789", unseen_s=300.0, at=WALL0 + 300)
    ]


def test_weak_store_beacon_still_counts_as_alive() -> None:
    rig = Rig()
    for _ in range(10):
        rig.see(-99, frame=STORE)
        assert health(rig.advance(100)) == []


def test_other_line_beacons_are_not_store_beacons() -> None:
    rig = Rig()
    other = LineSimpleBeacon(hwid="ffffffffff", device_message="00")
    for _ in range(10):
        rig.see(-60, frame=other)
        rig.advance(30)
    assert rig.engine.silent_store_beacons() == ["0123456789"]


# ----------------------------------------------------------------------------- footfall


def test_footfall_counts_distinct_devices_per_bucket() -> None:
    rig = Rig()
    for i in range(50):
        rig.phone(f"11:22:33:44:55:{i:02X}")
        rig.phone(f"11:22:33:44:55:{i:02x}")  # the same device, other case
        rig.advance(1)
    rig.see(-60)  # a beacon is not a person
    assert rig.engine.footfall_so_far() == 50
    events = footfall(rig.advance(250))
    assert events == [FootfallEvent(bucket_start=WALL0, bucket_s=300, devices=50, partial=False)]
    rig.phone("11:22:33:44:55:00")
    events = footfall(rig.advance(300))
    assert events == [FootfallEvent(bucket_start=WALL0 + 300, bucket_s=300, devices=1, partial=False)]


def test_footfall_first_bucket_is_partial_when_started_mid_bucket() -> None:
    rig = Rig(wall0=WALL0 + 100)
    rig.phone("11:22:33:44:55:66")
    [event] = footfall(rig.advance(200))
    assert event == FootfallEvent(bucket_start=WALL0, bucket_s=300, devices=1, partial=True)


def test_footfall_survives_the_wall_clock_going_back() -> None:
    rig = Rig(wall0=WALL0 + 600)
    rig.phone("11:22:33:44:55:66")
    rig.advance(10)
    rig.wall0 -= 3600  # NTP steps the clock back an hour
    events = footfall(rig.advance(1))
    assert events == [FootfallEvent(bucket_start=WALL0 + 600, bucket_s=300, devices=1, partial=True)]
    rig.phone("11:22:33:44:55:66")
    [event] = footfall(rig.advance(300))
    assert event.bucket_start == WALL0 + 600 - 3600
    assert event.partial
    assert event.devices == 1


def test_footfall_salt_rotates_at_taiwan_midnight() -> None:
    midnight_tw = WALL0 + 16 * 3600  # 16:00 UTC is 00:00 in UTC+8
    rig = Rig(wall0=midnight_tw - 600)
    assert rig.salts == 1
    rig.advance(599)
    assert rig.salts == 1
    rig.advance(1)
    assert rig.salts == 2


def test_no_raw_address_is_kept_in_engine_state() -> None:
    rig = Rig()
    address = "DE:AD:BE:EF:00:42"
    rig.phone(address)
    rig.see(-60, address=address)
    state = pickle.dumps(rig.engine.__dict__)
    for form in (address, address.lower(), address.replace(":", ""), address.replace(":", "").lower()):
        assert form.encode() not in state
        assert form.encode("utf-16-le") not in state
    events = rig.advance(400)
    assert footfall(events)
    for event in events:
        assert isinstance(event, FootfallEvent | BeaconHealthEvent | PresenceEvent)
        assert address not in str(event.payload())


def test_settings_reject_inverted_hysteresis_and_nonsense() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        PresenceSettings(enter_rssi=-90, exit_rssi=-80)
    with pytest.raises(ValueError, match="enter_sightings"):
        PresenceSettings(enter_sightings=0)
    with pytest.raises(ValueError, match="positive"):
        PresenceSettings(away_after_s=0)


def test_payloads_are_json_ready() -> None:
    import json

    rig = Rig(PresenceSettings(enter_sightings=1))
    [enter] = rig.see(-61)
    assert isinstance(enter, PresenceEvent)
    assert json.loads(json.dumps(enter.payload())) == {
        "kind": "enter",
        "beacon": "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2",
        "beacon_kind": "ibeacon",
        "rssi": -61.0,
        "present_s": 0.0,
        "ts": WALL0,
    }


# ------------------------------------------------------------------ property: event grammar

BEACONS = [
    IBeacon(uuid="e2c56db5-dffb-48d2-b060-d0f5a71096e0", major=1, minor=i, tx_power=-59) for i in range(3)
] + [STORE]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 45), st.integers(-127, 0), st.integers(0, len(BEACONS) - 1), st.booleans()),
        max_size=120,
    )
)
def test_per_beacon_events_follow_enter_stay_leave(ops: list[tuple[float, int, int, bool]]) -> None:
    """Whatever arrives, per beacon: enter, then stays, then leave, and again; never two enters."""
    rig = Rig(
        PresenceSettings(
            enter_sightings=2,
            away_after_s=10.0,
            stay_interval_s=5.0,
            store_beacon_hwids=("0123456789",),
            beacon_silent_after_s=20.0,
        )
    )
    events: list[object] = []
    for dt, rssi, index, tick in ops:
        events += rig.advance(dt) if tick else []
        if not tick:
            rig.t += dt
        events += rig.see(rssi, frame=BEACONS[index])
    events += rig.advance(60)
    state: dict[str, bool] = {}
    for event in events:
        if isinstance(event, PresenceEvent):
            present = state.get(event.beacon, False)
            if event.kind == "enter":
                assert not present
                state[event.beacon] = True
            else:
                assert present, event
                if event.kind == "leave":
                    state[event.beacon] = False
    assert not any(state.values())  # 60 s of silence at the end: everyone has left
    assert rig.engine.present() == []
    silent = [e.kind for e in events if isinstance(e, BeaconHealthEvent)]
    assert all(a != b for a, b in itertools.pairwise(silent))  # silent/restored alternate
