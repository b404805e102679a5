"""Capture replay: format validation, timing in the capture's time base, looping, the bundled capture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivers._status import Condition
from drivers.ble.const import LINE_BEACON_UUID
from drivers.ble.frames import LineSimpleBeacon, decode_advert
from drivers.ble.replay import DEMO_CAPTURE, ReplaySource, parse_capture_line
from drivers.ble.synth import demo_capture_lines
from tests.unit.drivers.ble.fakes import FakeTimer


def line(ts: float, address: str = "C2:00:00:00:00:01", rssi: int = -60, **extra: object) -> str:
    return json.dumps({"ts": ts, "address": address, "rssi": rssi, **extra})


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_parse_capture_line() -> None:
    parsed = parse_capture_line(
        line(
            5.5,
            manufacturer_data={"0x004c": "0215", "6": "01"},
            service_data={LINE_BEACON_UUID.upper(): "02"},
        )
    )
    assert parsed is not None
    assert parsed.manufacturer_data == {0x004C: b"\x02\x15", 6: b"\x01"}
    assert parsed.service_data == {LINE_BEACON_UUID: b"\x02"}
    assert parse_capture_line("") is None
    assert parse_capture_line("# comment") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({"address": "x", "rssi": -1}), "ts"),
        (json.dumps({"ts": 1, "rssi": -1}), "address"),
        (json.dumps({"ts": 1, "address": "x", "rssi": -200}), "rssi"),
        (json.dumps({"ts": 1, "address": "x", "rssi": True}), "rssi"),
        (
            json.dumps({"ts": 1, "address": "x", "rssi": -1, "manufacturer_data": {"apple": "00"}}),
            "company id",
        ),
        (
            json.dumps({"ts": 1, "address": "x", "rssi": -1, "manufacturer_data": {"0x10000": "00"}}),
            "out of range",
        ),
        (json.dumps({"ts": 1, "address": "x", "rssi": -1, "service_data": {"u": "zz"}}), "not hex"),
        (json.dumps({"ts": 1, "address": "x", "rssi": -1, "service_data": ["00"]}), "object"),
    ],
)
def test_parse_capture_line_rejects_with_the_field_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_capture_line(text)


async def test_replay_keeps_the_capture_timing_at_any_speed(tmp_path: Path) -> None:
    path = write(tmp_path, line(100.0), line(100.5), "", "# gap", line(110.0))
    timer = FakeTimer()
    async with ReplaySource(path, speed=10.0, timer=timer) as source:
        got = []
        for _ in range(30):
            advert = await source.next_advert(1.0)
            if advert is not None:
                got.append(advert.at)
        assert got == pytest.approx([0.0, 0.5, 10.0])
        assert 2.5 <= timer.t <= 3.0  # under 30 virtual seconds took under 3 real ones at 10x
        assert source.status.level is Condition.DEGRADED
        assert "finished" in source.status.detail


async def test_replay_loops_with_a_continuing_clock(tmp_path: Path) -> None:
    path = write(tmp_path, line(0.0), line(2.0))
    async with ReplaySource(path, speed=1.0, loop=True, timer=FakeTimer()) as source:
        got = []
        for _ in range(10):
            advert = await source.next_advert(1.0)
            if advert is not None:
                got.append(advert.at)
        assert got == pytest.approx([0.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0])
        assert source.rounds >= 2


async def test_a_bad_line_stops_the_replay_red_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, line(0.0), line(1.0), '{"ts": 2, "address": "x", "rssi": "loud"}', line(3.0))
    async with ReplaySource(path, timer=FakeTimer()) as source:
        for _ in range(10):
            await source.next_advert(1.0)
        assert source.received == 2  # the lines before the bad one played; nothing after it
        assert source.status.level is Condition.DOWN
        assert f"{path}:3: rssi" in source.status.detail


async def test_a_missing_capture_is_red_not_a_crash(tmp_path: Path) -> None:
    async with ReplaySource(tmp_path / "nope.jsonl", timer=FakeTimer()) as source:
        assert await source.next_advert(1.0) is None
        assert source.status.level is Condition.DOWN
        assert "cannot open capture" in source.status.detail


def test_bundled_capture_is_the_generator_output() -> None:
    assert DEMO_CAPTURE.read_text(encoding="utf-8").splitlines() == list(demo_capture_lines())


def test_bundled_capture_has_phones_and_the_demo_store_beacon() -> None:
    lines = [
        parsed
        for text in DEMO_CAPTURE.read_text(encoding="utf-8").splitlines()
        if (parsed := parse_capture_line(text))
    ]
    frames = [decode_advert(p.manufacturer_data, p.service_data) for p in lines]
    store = [f for fs in frames for f in fs if f == LineSimpleBeacon(hwid="0123456789", device_message="00")]
    phones = {p.address for p, fs in zip(lines, frames, strict=True) if not fs}
    kinds = {f.kind for fs in frames for f in fs}
    assert len(store) > 100
    assert len(phones) >= 10
    assert kinds == {"line-simple-beacon", "ibeacon", "eddystone-uid", "eddystone-tlm"}
    assert [p.ts for p in lines] == sorted(p.ts for p in lines)


async def test_a_capture_that_is_not_utf8_is_red(tmp_path: Path) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(line(0.0).encode() + b"\n\xff\xfe\n")
    async with ReplaySource(path, timer=FakeTimer()) as source:
        for _ in range(5):
            await source.next_advert(1.0)
        assert source.status.level is Condition.DOWN
        assert "not UTF-8" in source.status.detail
