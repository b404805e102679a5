"""Recording: the capture format round-trips through replay, and no real address is written."""

from __future__ import annotations

from pathlib import Path

from drivers.ble.frames import decode_advert
from drivers.ble.record import pseudonymize, record
from drivers.ble.replay import DEMO_CAPTURE, ReplaySource, parse_capture_line
from tests.unit.drivers.ble.fakes import FakeTimer


def test_pseudonyms_are_stable_per_key_and_look_like_random_static_addresses() -> None:
    key, other = b"k" * 32, b"o" * 32
    a = pseudonymize("AA:BB:CC:DD:EE:FF", key)
    assert a == pseudonymize("aa:bb:cc:dd:ee:ff", key)
    assert a != pseudonymize("AA:BB:CC:DD:EE:FE", key)
    assert a != pseudonymize("AA:BB:CC:DD:EE:FF", other)
    assert int(a[:2], 16) & 0xC0 == 0xC0
    assert len(a) == 17


async def test_record_a_replay_and_replay_the_recording(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    said: list[str] = []
    timer = FakeTimer()
    result = await record(
        ReplaySource(DEMO_CAPTURE, loop=False, timer=timer),
        out,
        seconds=200.0,
        wall_clock=lambda: 1_800_000_000.0 + timer.t,
        say=said.append,
    )
    original = [
        p for t in DEMO_CAPTURE.read_text(encoding="utf-8").splitlines() if (p := parse_capture_line(t))
    ]
    recorded = [p for t in out.read_text(encoding="utf-8").splitlines() if (p := parse_capture_line(t))]
    assert result.adverts == len(original) == len(recorded)
    assert result.devices == len({p.address for p in original})
    text = out.read_text(encoding="utf-8").upper()
    for p in original:
        assert p.address.upper() not in text
    assert [decode_advert(p.manufacturer_data, p.service_data) for p in recorded] == [
        decode_advert(p.manufacturer_data, p.service_data) for p in original
    ]
    assert [p.rssi for p in recorded] == [p.rssi for p in original]
    assert said and said[0].startswith("green")
    # The recording itself replays.
    async with ReplaySource(out, loop=False, timer=FakeTimer()) as again:
        heard = 0
        for _ in range(5000):
            if await again.next_advert(1.0) is not None:
                heard += 1
        assert heard == len(recorded)
