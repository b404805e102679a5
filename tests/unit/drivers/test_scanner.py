"""The keyboard-wedge decoder (pure), the replay twin, and the driver choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.scanner import ReplayScanner, WedgeDecoder, open_scanner
from pos_bridge.config import POSConfig

KEY = "123456789012345678"


def feed_all(decoder: WedgeDecoder, names: list[str]) -> list[str]:
    return [code for name in names if (code := decoder.feed(name)) is not None]


def presses(text: str) -> list[str]:
    return [f"KEY_{c}" for c in text] + ["KEY_ENTER"]


def test_decoder_reads_a_one_time_key() -> None:
    assert feed_all(WedgeDecoder(), presses(KEY)) == [KEY]


def test_decoder_reads_keypad_digits_and_ignores_shift() -> None:
    names = ["KEY_LEFTSHIFT"] + [f"KEY_KP{c}" for c in KEY] + ["KEY_KPENTER"]
    assert feed_all(WedgeDecoder(), names) == [KEY]


@pytest.mark.parametrize("text", ["4710088432123", "12345678901234567", "1234567890123456789", ""])
def test_decoder_drops_other_barcodes(text: str) -> None:
    assert feed_all(WedgeDecoder(), presses(text)) == []


def test_decoder_resets_on_letters_and_recovers() -> None:
    decoder = WedgeDecoder()
    assert feed_all(decoder, ["KEY_1", "KEY_A", *presses(KEY)]) == [KEY]
    assert feed_all(decoder, ["KEY_9"] * 100 + ["KEY_ENTER", *presses(KEY)]) == [KEY]  # noise, then a scan


async def test_replay_yields_valid_keys_then_pushed_ones(tmp_path: Path) -> None:
    path = tmp_path / "scans.txt"
    path.write_text(f"# a capture\n{KEY}\nnot-a-key\n", encoding="utf-8")
    scanner = ReplayScanner.from_file(path, interval_s=0)
    scanner.push("876543210987654321")
    scanner.close()
    async with scanner:
        assert [k async for k in scanner.codes()] == [KEY, "876543210987654321"]


def test_open_scanner_picks_the_driver(tmp_path: Path) -> None:
    path = tmp_path / "scans.txt"
    path.write_text(KEY, encoding="utf-8")
    assert isinstance(open_scanner("replay", replay_file=path), ReplayScanner)
    evdev = open_scanner("evdev", device="/dev/input/event7")
    assert type(evdev).__name__ == "EvdevScanner"  # evdev itself is imported only on enter
    with pytest.raises(ValueError, match="no scanner"):
        open_scanner("none")


def test_config_requires_the_scanner_source() -> None:
    with pytest.raises(ValueError, match="scanner_device"):
        POSConfig(scanner="evdev")
    with pytest.raises(ValueError, match="scanner_replay_file"):
        POSConfig(scanner="replay")
