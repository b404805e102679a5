"""Frame parsers: table tests from the layouts, hypothesis fuzzing, and a round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble import frames
from drivers.ble.const import EDDYSTONE_UUID, LINE_BEACON_UUID
from drivers.ble.frames import (
    EddystoneEID,
    EddystoneTLM,
    EddystoneUID,
    EddystoneURL,
    IBeacon,
    LineSimpleBeacon,
    decode_advert,
    decode_payload,
    frame_to_dict,
    parse_ad_structures,
    parse_eddystone,
    parse_hex,
    parse_ibeacon,
    parse_line_beacon,
)

IBEACON_MD = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
IBEACON = IBeacon(uuid="e2c56db5-dffb-48d2-b060-d0f5a71096e0", major=1, minor=2, tx_power=-59)

# (hex of the frame after its container key, expected frame or None, why)
IBEACON_TABLE = [
    ("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5", IBEACON, "canonical 25-byte AD"),
    (
        "0215ffffffffffffffffffffffffffffffffffffffff7f",
        IBeacon(uuid="ffffffff-ffff-ffff-ffff-ffffffffffff", major=65535, minor=65535, tx_power=127),
        "all ones, positive power",
    ),
    ("0215e2c56db5dffb48d2b060d0f5a71096e000010002", None, "one byte short"),
    ("0215e2c56db5dffb48d2b060d0f5a71096e000010002c500", None, "one byte long"),
    ("0216e2c56db5dffb48d2b060d0f5a71096e000010002c5", None, "length byte not 0x15"),
    ("0315e2c56db5dffb48d2b060d0f5a71096e000010002c5", None, "type not 0x02"),
    ("1005031c0f7e2a", None, "Apple nearby-info (a phone, not a beacon)"),
    ("", None, "empty"),
]

EDDYSTONE_TABLE = [
    (
        "00e700010203040506070809" + "0a0b0c0d0e0f" + "0000",
        EddystoneUID(namespace="00010203040506070809", instance="0a0b0c0d0e0f", tx_power=-25),
        "UID with reserved bytes",
    ),
    (
        "00e700010203040506070809" + "0a0b0c0d0e0f",
        EddystoneUID(namespace="00010203040506070809", instance="0a0b0c0d0e0f", tx_power=-25),
        "UID with the reserved bytes omitted",
    ),
    ("00e700010203040506070809" + "0a0b0c0d0e", None, "UID instance one byte short"),
    ("00e700010203040506070809" + "0a0b0c0d0e0f00", None, "UID 19 bytes"),
    ("00e700010203040506070809" + "0a0b0c0d0e0f000000", None, "UID 21 bytes"),
    ("10eb03676f6f676c6507", EddystoneURL(url="https://google.com", tx_power=-21), "URL .com"),
    ("10eb00676f6f676c6500", EddystoneURL(url="http://www.google.com/", tx_power=-21), "URL .com/"),
    ("10000161620d", EddystoneURL(url="https://www.ab.gov", tx_power=0), "URL .gov, scheme 1"),
    (
        "100002" + b"abcdefghijklmnopq".hex(),
        EddystoneURL(url="http://abcdefghijklmnopq", tx_power=0),
        "URL with the longest body (17 bytes, 20-byte frame)",
    ),
    ("100002" + b"abcdefghijklmnopqr".hex(), None, "URL body of 18 bytes (21-byte frame)"),
    ("10eb04676f6f676c65", None, "URL scheme 4 does not exist"),
    ("10eb03676f0e6f", None, "URL reserved byte 0x0e"),
    ("10eb0367ff", None, "URL reserved byte 0xff"),
    ("10eb03", None, "URL with empty body"),
    (
        "20000bb81a8000000fa0000003e8",
        EddystoneTLM(battery_mv=3000, temperature_c=26.5, adv_count=4000, uptime_s=100.0),
        "TLM plain",
    ),
    (
        "20000000800000000001" + "00000001",
        EddystoneTLM(battery_mv=None, temperature_c=None, adv_count=1, uptime_s=0.1),
        "TLM with no sensors (0 mV, 0x8000)",
    ),
    (
        "20000c80ff8000000000" + "00000000",
        EddystoneTLM(battery_mv=3200, temperature_c=-0.5, adv_count=0, uptime_s=0.0),
        "TLM negative temperature",
    ),
    ("20010bb81a8000000fa0000003e8", None, "TLM version 1 is encrypted"),
    ("20000bb81a8000000fa0000003", None, "TLM 13 bytes"),
    ("20000bb81a8000000fa0000003e800", None, "TLM 15 bytes"),
    ("30ee0102030405060708", EddystoneEID(eid="0102030405060708", tx_power=-18), "EID"),
    ("30ee01020304050607", None, "EID 9 bytes"),
    ("30ee010203040506070809", None, "EID 11 bytes"),
    ("40ee0102030405060708", None, "unknown frame type 0x40"),
    ("", None, "empty"),
]

LINE_TABLE = [
    (
        "0201234567897f00",
        LineSimpleBeacon(hwid="0123456789", device_message="00"),
        "demo store, 1-byte message",
    ),
    (
        "02abcdef01237f" + "00112233445566778899aabbcc",
        LineSimpleBeacon(hwid="abcdef0123", device_message="00112233445566778899aabbcc"),
        "13-byte message (20-byte frame)",
    ),
    ("02abcdef01237f" + "00112233445566778899aabbccdd", None, "14-byte message"),
    ("0201234567897f", None, "no message"),
    ("0101234567897f00", None, "frame type 0x01"),
    ("0201234567897e00", None, "TX byte not the fixed 0x7F"),
    ("", None, "empty"),
]


@pytest.mark.parametrize(("hexdata", "expected", "why"), IBEACON_TABLE)
def test_ibeacon_table(hexdata: str, expected: IBeacon | None, why: str) -> None:
    assert parse_ibeacon(bytes.fromhex(hexdata)) == expected, why


@pytest.mark.parametrize(("hexdata", "expected", "why"), EDDYSTONE_TABLE)
def test_eddystone_table(hexdata: str, expected: frames.Frame | None, why: str) -> None:
    assert parse_eddystone(bytes.fromhex(hexdata)) == expected, why


@pytest.mark.parametrize(("hexdata", "expected", "why"), LINE_TABLE)
def test_line_beacon_table(hexdata: str, expected: LineSimpleBeacon | None, why: str) -> None:
    assert parse_line_beacon(bytes.fromhex(hexdata)) == expected, why


def test_bleak_shaped_advert_with_every_kind() -> None:
    found = decode_advert(
        {0x004C: IBEACON_MD, 0x0006: b"\x01\x09\x20"},
        {
            LINE_BEACON_UUID: bytes.fromhex("0201234567897f00"),
            EDDYSTONE_UUID: bytes.fromhex("30ee0102030405060708"),
            "0000fe9f-0000-1000-8000-00805f9b34fb": b"\x00" * 20,
        },
    )
    assert found == [
        IBEACON,
        LineSimpleBeacon(hwid="0123456789", device_message="00"),
        EddystoneEID(eid="0102030405060708", tx_power=-18),
    ]


def test_ibeacon_under_another_company_id_is_not_ibeacon() -> None:
    assert decode_advert({0x0075: IBEACON_MD}, {}) == []


# Raw payloads as btmon prints them (flags + beacon AD structures).
PAYLOAD_TABLE = [
    ("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5", [IBEACON], "iBeacon"),
    (
        "02 01 06 03 03 6f fe 0b 16 6f fe 02 01 23 45 67 89 7f 00",
        [LineSimpleBeacon(hwid="0123456789", device_message="00")],
        "LINE Simple Beacon with its UUID list",
    ),
    (
        "0201060303aafe1116aafe20000bb81a8000000fa0000003e8",
        [EddystoneTLM(battery_mv=3000, temperature_c=26.5, adv_count=4000, uptime_s=100.0)],
        "Eddystone TLM",
    ),
    (
        "0201060303aafe0d16aafe10eb03676f6f676c6507",
        [EddystoneURL(url="https://google.com", tx_power=-21)],
        "Eddystone URL",
    ),
    ("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5000000", [IBEACON], "zero padding"),
    ("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002", [], "truncated AD structure"),
    (
        "0201061bff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c500",
        [],
        "AD one byte too long for iBeacon",
    ),
    ("02011a0aff4c0010050b1c1a2b3c", [], "an iPhone's nearby-info advert"),
    ("", [], "empty"),
    ("01ff", [], "manufacturer AD without a company id"),
]


@pytest.mark.parametrize(("hexdata", "expected", "why"), PAYLOAD_TABLE)
def test_payload_table(hexdata: str, expected: list[frames.Frame], why: str) -> None:
    raw = parse_hex(hexdata)
    assert raw is not None
    assert decode_payload(raw) == expected, why


def test_ad_structures_expand_uuids() -> None:
    fields = parse_ad_structures(
        bytes.fromhex("0303aafe" + "0716" + "6ffe" + "01020304" + "0720" + "78563412" + "aabb" + "1321")
        + bytes(range(16))
        + b"\x99\x98"
    )
    assert fields is not None
    assert fields.service_uuids == [EDDYSTONE_UUID]
    assert fields.service_data == {
        LINE_BEACON_UUID: b"\x01\x02\x03\x04",
        "12345678-0000-1000-8000-00805f9b34fb": b"\xaa\xbb",
        "0f0e0d0c-0b0a-0908-0706-050403020100": b"\x99\x98",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0x0201 06", b"\x02\x01\x06"),
        ("02:01:06", b"\x02\x01\x06"),
        ("02-01-06\n", b"\x02\x01\x06"),
        ("zz", None),
        ("123", None),
    ],
)
def test_parse_hex(text: str, expected: bytes | None) -> None:
    assert parse_hex(text) == expected


def test_frame_to_dict_names_kind_first() -> None:
    assert frame_to_dict(IBEACON) == {
        "kind": "ibeacon",
        "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
        "major": 1,
        "minor": 2,
        "tx_power": -59,
    }
    assert list(frame_to_dict(LineSimpleBeacon(hwid="0123456789", device_message="00"))) == [
        "kind",
        "hwid",
        "device_message",
    ]


def test_keys_identify_beacons_not_telemetry() -> None:
    assert IBEACON.key == "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"
    assert LineSimpleBeacon(hwid="0123456789", device_message="00").key == "line:0123456789"
    assert EddystoneTLM(battery_mv=None, temperature_c=None, adv_count=0, uptime_s=0).key is None


# ----------------------------------------------------------------------------- fuzzing


@given(st.binary(max_size=64))
def test_parsers_never_raise_on_arbitrary_bytes(data: bytes) -> None:
    for parse in (parse_ibeacon, parse_eddystone, parse_line_beacon, decode_payload):
        parse(data)
    fields = parse_ad_structures(data)
    if fields is not None:
        decode_advert(fields.manufacturer_data, fields.service_data)


@given(
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=4),
    st.dictionaries(
        st.sampled_from([EDDYSTONE_UUID, LINE_BEACON_UUID, "0000180f-0000-1000-8000-00805f9b34fb"]),
        st.binary(max_size=40),
        max_size=3,
    ),
)
def test_decode_advert_never_raises(manufacturer: dict[int, bytes], service: dict[str, bytes]) -> None:
    for frame in decode_advert(manufacturer, service):
        assert frame_to_dict(frame)["kind"] == frame.kind


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers())))
def test_parsers_never_raise_on_non_bytes(value: object) -> None:
    assert parse_ibeacon(value) is None
    assert parse_eddystone(value) is None
    assert parse_line_beacon(value) is None
    assert parse_ad_structures(value) is None
    assert decode_advert(value, value) == []  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_parse_hex_never_raises(text: str) -> None:
    parse_hex(text)


@given(st.uuids(), st.integers(0, 65535), st.integers(0, 65535), st.integers(-128, 127))
def test_ibeacon_round_trip(uuid: object, major: int, minor: int, tx: int) -> None:
    import uuid as uuid_mod

    assert isinstance(uuid, uuid_mod.UUID)
    md = (
        b"\x02\x15"
        + uuid.bytes
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + tx.to_bytes(1, "big", signed=True)
    )
    payload = bytes([0x1A, 0xFF, 0x4C, 0x00]) + md
    assert decode_payload(payload) == [IBeacon(uuid=str(uuid), major=major, minor=minor, tx_power=tx)]


@given(st.binary(min_size=5, max_size=5), st.binary(min_size=1, max_size=13))
def test_line_beacon_round_trip(hwid: bytes, message: bytes) -> None:
    frame = b"\x02" + hwid + b"\x7f" + message
    payload = bytes([len(frame) + 3, 0x16, 0x6F, 0xFE]) + frame
    assert decode_payload(payload) == [LineSimpleBeacon(hwid=hwid.hex(), device_message=message.hex())]


def test_bleak_advertisement_data_decodes() -> None:
    from bleak.backends.scanner import AdvertisementData

    adv = AdvertisementData(
        local_name=None,
        manufacturer_data={0x004C: IBEACON_MD},
        service_data={LINE_BEACON_UUID: bytes.fromhex("0201234567897f0102")},
        service_uuids=["0000fe6f-0000-1000-8000-00805f9b34fb"],
        tx_power=None,
        rssi=-60,
        platform_data=(),
    )
    assert decode_advert(adv.manufacturer_data, adv.service_data) == [
        IBEACON,
        LineSimpleBeacon(hwid="0123456789", device_message="0102"),
    ]
