"""Simple Beacon advertising data: LINE's two published parameter examples byte for byte, the
limits of each field, and a round trip through the parser the scanner uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.frames import LineSimpleBeacon, decode_payload, parse_ad_structures
from drivers.ble.simple_beacon import (
    SimpleBeaconError,
    advert,
    frame,
    parse_device_message,
    parse_hwid,
)

# github.com/line/line-simple-beacon README.en.md, "Advertising data example": byte offsets 0-30.
EXAMPLE_1 = bytes.fromhex(
    "02 01 06 03 03 6F FE 17 16 6F FE 02 32 AF 51 9E 88 7F 00 32 00 69 00 FA FF FF 00 01 99 FF 88"
)
EXAMPLE_2 = bytes.fromhex(
    "02 01 06 03 03 6F FE 0E 16 6F FE 02 8A DF AF 43 26 7F 20 17 02 28 00 00 00 00 00 00 00 00 00"
)


@pytest.mark.parametrize(
    ("hwid", "dm", "expected"),
    [
        ("32AF519E88", "0032006900FAFFFF000199FF88", EXAMPLE_1),
        ("8ADFAF4326", "20170228", EXAMPLE_2),
    ],
    ids=["example-1", "example-2"],
)
def test_line_published_examples_byte_for_byte(hwid: str, dm: str, expected: bytes) -> None:
    built = advert(parse_hwid(hwid), parse_device_message(dm))
    assert len(expected) == 31
    assert built.payload == expected
    assert built.significant == expected.rstrip(b"\x00")  # neither example ends in a 00 byte


def test_example_structures_split_as_the_table_shows() -> None:
    built = advert(parse_hwid("8ADFAF4326"), parse_device_message("20170228"))
    assert built.flags == bytes.fromhex("020106")
    assert built.service_uuids == bytes.fromhex("03036ffe")
    assert built.service_data == bytes.fromhex("0e166ffe028adfaf43267f20170228")
    assert built.frame == bytes.fromhex("028adfaf43267f20170228")
    assert len(built.significant) == 22  # "byte offsets greater than 22 ... non-significant"
    assert built.service_uuid == "fe6f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32AF519E88", bytes.fromhex("32af519e88")),
        ("32af519e88", bytes.fromhex("32af519e88")),
        ("32:AF:51:9E:88", bytes.fromhex("32af519e88")),
        (" 0x32af519e88 ", bytes.fromhex("32af519e88")),
    ],
)
def test_hwid_forms_people_paste(text: str, expected: bytes) -> None:
    assert parse_hwid(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("32AF519E", "5 bytes"),
        ("32AF519E8800", "5 bytes"),
        ("", "5 bytes"),
        ("32AF519E8G", "hex digits"),
        ("32AF519E8", "hex digits"),
    ],
)
def test_bad_hwid_says_what_is_wrong(text: str, match: str) -> None:
    with pytest.raises(SimpleBeaconError, match=match):
        parse_hwid(text)


def test_device_message_counts_bytes_not_hex_digits() -> None:
    # LINE's Python sample compares hex characters; 13 bytes are 26 digits and are allowed.
    assert len(parse_device_message("00" * 13)) == 13
    assert parse_device_message("00") == b"\x00"
    with pytest.raises(SimpleBeaconError, match="1-13 bytes"):
        parse_device_message("00" * 14)
    with pytest.raises(SimpleBeaconError, match="1-13 bytes"):
        parse_device_message("")


def test_frame_rejects_wrong_sizes() -> None:
    with pytest.raises(SimpleBeaconError, match="HWID"):
        frame(b"\x01\x02\x03\x04", b"\x00")
    with pytest.raises(SimpleBeaconError, match="device message"):
        frame(b"\x01\x02\x03\x04\x05", b"")


@pytest.mark.parametrize("flags", [0x00, 0x100, -1])
def test_flags_zero_is_forbidden(flags: int) -> None:
    with pytest.raises(SimpleBeaconError, match="flags"):
        advert(b"\x01\x02\x03\x04\x05", b"\x00", flags=flags)


@given(hwid=st.binary(min_size=5, max_size=5), dm=st.binary(min_size=1, max_size=13))
def test_every_valid_advert_fits_and_parses_back(hwid: bytes, dm: bytes) -> None:
    built = advert(hwid, dm)
    assert len(built.payload) == 31
    assert 8 <= len(built.frame) <= 20
    fields = parse_ad_structures(built.payload)
    assert fields is not None
    assert fields.service_uuids == ["0000fe6f-0000-1000-8000-00805f9b34fb"]
    assert decode_payload(built.payload) == [LineSimpleBeacon(hwid=hwid.hex(), device_message=dm.hex())]


def test_the_advertiser_loads_dbus_fast_only_when_it_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import drivers.ble.advertiser, agent.wiring.beacon, membership.beacon_code\n"
        "print('dbus_fast' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[4]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
