"""Beacon frame parsers: iBeacon, Eddystone (UID, URL, TLM, EID) and LINE Simple Beacon.

Owns the byte layouts (reference brief section 6) and nothing else: pure functions over
bytes that return a typed frame or None and never raise, whatever they are given. Lengths and
magic bytes are checked exactly; a frame that is almost right is not a frame.

Two input forms reach the same decoder: bleak's `AdvertisementData` fields
(`manufacturer_data: dict[int, bytes]` without the company id, `service_data: dict[str, bytes]`
keyed by 128-bit UUID strings) and a raw advertising payload of AD structures (what btmon
prints), which `parse_ad_structures` turns into those two dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from drivers.ble.const import APPLE_COMPANY_ID, EDDYSTONE_UUID, LINE_BEACON_UUID

__all__ = [
    "AdFields",
    "EddystoneEID",
    "EddystoneTLM",
    "EddystoneUID",
    "EddystoneURL",
    "Frame",
    "IBeacon",
    "LineSimpleBeacon",
    "decode_advert",
    "decode_payload",
    "frame_to_dict",
    "parse_ad_structures",
    "parse_eddystone",
    "parse_hex",
    "parse_ibeacon",
    "parse_line_beacon",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class IBeacon:
    kind: ClassVar[str] = "ibeacon"
    uuid: str
    major: int
    minor: int
    tx_power: int

    @property
    def key(self) -> str:
        """Stable identity of the beacon (not of the radio address that carried it)."""
        return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"


@dataclass(frozen=True, kw_only=True, slots=True)
class EddystoneUID:
    kind: ClassVar[str] = "eddystone-uid"
    namespace: str
    instance: str
    tx_power: int

    @property
    def key(self) -> str:
        return f"eddystone-uid:{self.namespace}:{self.instance}"


@dataclass(frozen=True, kw_only=True, slots=True)
class EddystoneURL:
    kind: ClassVar[str] = "eddystone-url"
    url: str
    tx_power: int

    @property
    def key(self) -> str:
        return f"eddystone-url:{self.url}"


@dataclass(frozen=True, kw_only=True, slots=True)
class EddystoneTLM:
    """Unencrypted telemetry; `battery_mv`/`temperature_c` are None when the beacon has no sensor."""

    kind: ClassVar[str] = "eddystone-tlm"
    battery_mv: int | None
    temperature_c: float | None
    adv_count: int
    uptime_s: float

    @property
    def key(self) -> None:
        """Telemetry names no beacon, so it never drives presence."""
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class EddystoneEID:
    kind: ClassVar[str] = "eddystone-eid"
    eid: str
    tx_power: int

    @property
    def key(self) -> None:
        """An EID rotates by design; without the beacon's key it identifies nothing stable."""
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class LineSimpleBeacon:
    kind: ClassVar[str] = "line-simple-beacon"
    hwid: str
    device_message: str

    @property
    def key(self) -> str:
        return f"line:{self.hwid}"


Frame = IBeacon | EddystoneUID | EddystoneURL | EddystoneTLM | EddystoneEID | LineSimpleBeacon


def frame_to_dict(frame: Frame) -> dict[str, Any]:
    """The JSON shape of a frame: `kind` first, then its fields."""
    return {"kind": frame.kind, **asdict(frame)}


def _int8(value: int) -> int:
    return value - 256 if value > 127 else value


def _as_bytes(data: object) -> bytes | None:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return None


# ------------------------------------------------------------------------------ iBeacon


def parse_ibeacon(data: object) -> IBeacon | None:
    """Apple manufacturer data *after* the company id `4C 00`: `02 15`, UUID, major, minor, power.

    The full manufacturer AD is 25 bytes (`4C 00 02 15` + 21), so `data` must be exactly 23.
    """
    raw = _as_bytes(data)
    if raw is None:
        return None
    if len(raw) != 23 or raw[0] != 0x02 or raw[1] != 0x15:
        return None
    h = raw[2:18].hex()
    return IBeacon(
        uuid=f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
        major=(raw[18] << 8) | raw[19],
        minor=(raw[20] << 8) | raw[21],
        tx_power=_int8(raw[22]),
    )


# ---------------------------------------------------------------------------- Eddystone

_URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_URL_CODES = (
    ".com/",
    ".org/",
    ".edu/",
    ".net/",
    ".info/",
    ".biz/",
    ".gov/",
    ".com",
    ".org",
    ".edu",
    ".net",
    ".info",
    ".biz",
    ".gov",
)


def _eddystone_url(raw: bytes) -> EddystoneURL | None:
    # 0 type, 1 tx@0m, 2 scheme, 3.. encoded URL of 1-17 bytes.
    if not 4 <= len(raw) <= 20 or raw[2] >= len(_URL_SCHEMES):
        return None
    parts = [_URL_SCHEMES[raw[2]]]
    for byte in raw[3:]:
        if byte < len(_URL_CODES):
            parts.append(_URL_CODES[byte])
        elif 0x21 <= byte <= 0x7E:
            parts.append(chr(byte))
        else:
            return None  # 0x0e-0x20 and 0x7f-0xff are reserved by the spec
    return EddystoneURL(url="".join(parts), tx_power=_int8(raw[1]))


def _eddystone_tlm(raw: bytes) -> EddystoneTLM | None:
    # Version 0x00 (plain) is exactly 14 bytes; 0x01 is encrypted (ETLM) and not decodable here.
    if len(raw) != 14 or raw[1] != 0x00:
        return None
    battery = int.from_bytes(raw[2:4], "big")
    temp_raw = int.from_bytes(raw[4:6], "big")
    temperature = None if temp_raw == 0x8000 else int.from_bytes(raw[4:6], "big", signed=True) / 256
    return EddystoneTLM(
        battery_mv=battery or None,  # 0 means "no battery sensor" in the spec
        temperature_c=temperature,
        adv_count=int.from_bytes(raw[6:10], "big"),
        uptime_s=int.from_bytes(raw[10:14], "big") / 10,
    )


def parse_eddystone(data: object) -> EddystoneUID | EddystoneURL | EddystoneTLM | EddystoneEID | None:
    """Service data under 0xFEAA; the first byte is the frame type."""
    raw = _as_bytes(data)
    if raw is None:
        return None
    if not raw:
        return None
    frame_type = raw[0]
    if frame_type == 0x00:
        # 1 tx, 2-11 namespace, 12-17 instance, 18-19 reserved (often omitted on the air).
        if len(raw) not in (18, 20):
            return None
        return EddystoneUID(namespace=raw[2:12].hex(), instance=raw[12:18].hex(), tx_power=_int8(raw[1]))
    if frame_type == 0x10:
        return _eddystone_url(raw)
    if frame_type == 0x20:
        return _eddystone_tlm(raw)
    if frame_type == 0x30:
        if len(raw) != 10:
            return None
        return EddystoneEID(eid=raw[2:10].hex(), tx_power=_int8(raw[1]))
    return None


# --------------------------------------------------------------------- LINE Simple Beacon


def parse_line_beacon(data: object) -> LineSimpleBeacon | None:
    """Service data under 0xFE6F: `02`, 5-byte HWID, `7F`, device message of 1-13 bytes."""
    raw = _as_bytes(data)
    if raw is None:
        return None
    if not 8 <= len(raw) <= 20 or raw[0] != 0x02 or raw[6] != 0x7F:
        return None
    return LineSimpleBeacon(hwid=raw[1:6].hex(), device_message=raw[7:].hex())


# ------------------------------------------------------------------------- whole adverts


def decode_advert(manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes]) -> list[Frame]:
    """Every beacon frame in one advert given as bleak's dicts (empty list: not a beacon).

    This is the hot path (every advert of every phone in the shop), so it looks up only the
    three keys that can carry a beacon and touches nothing else.
    """
    frames: list[Frame] = []
    try:
        if manufacturer_data:
            apple = manufacturer_data.get(APPLE_COMPANY_ID)
            if apple is not None and len(apple) == 23:  # most Apple adverts are phones: skip early
                ibeacon = parse_ibeacon(apple)
                if ibeacon is not None:
                    frames.append(ibeacon)
        if service_data:
            line = service_data.get(LINE_BEACON_UUID)
            if line is not None:
                beacon = parse_line_beacon(line)
                if beacon is not None:
                    frames.append(beacon)
            eddy = service_data.get(EDDYSTONE_UUID)
            if eddy is not None:
                frame = parse_eddystone(eddy)
                if frame is not None:
                    frames.append(frame)
    except (AttributeError, TypeError):
        return []  # not mappings at all: nothing to decode
    return frames


@dataclass(frozen=True, kw_only=True, slots=True)
class AdFields:
    """The parts of a raw advertising payload that can carry beacon frames, in bleak's shape."""

    manufacturer_data: dict[int, bytes]
    service_data: dict[str, bytes]
    service_uuids: list[str]


def _uuid16(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


def _uuid32(value: int) -> str:
    return f"{value:08x}-0000-1000-8000-00805f9b34fb"


def _uuid128(le: bytes) -> str:
    h = le[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_ad_structures(payload: object) -> AdFields | None:
    """Split a raw advertising payload into AD structures (length, type, data).

    Returns None when a structure runs past the end of the payload (a truncated or garbled
    capture). A zero length byte ends the significant part (the rest is padding). Structures
    too short for their own header fields are skipped, like a controller would.
    """
    raw = _as_bytes(payload)
    if raw is None:
        return None
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    uuids: list[str] = []
    i = 0
    while i < len(raw):
        length = raw[i]
        if length == 0:
            break
        if i + 1 + length > len(raw):
            return None
        ad_type = raw[i + 1]
        data = raw[i + 2 : i + 1 + length]
        i += 1 + length
        if ad_type == 0xFF and len(data) >= 2:
            manufacturer[int.from_bytes(data[:2], "little")] = data[2:]
        elif ad_type == 0x16 and len(data) >= 2:
            service[_uuid16(int.from_bytes(data[:2], "little"))] = data[2:]
        elif ad_type == 0x20 and len(data) >= 4:
            service[_uuid32(int.from_bytes(data[:4], "little"))] = data[4:]
        elif ad_type == 0x21 and len(data) >= 16:
            service[_uuid128(data[:16])] = data[16:]
        elif ad_type in (0x02, 0x03):
            uuids.extend(
                _uuid16(int.from_bytes(data[j : j + 2], "little")) for j in range(0, len(data) - 1, 2)
            )
    return AdFields(manufacturer_data=manufacturer, service_data=service, service_uuids=uuids)


def parse_hex(text: str) -> bytes | None:
    """Hex as people paste it from btmon or hcidump: spaces, colons, dashes and `0x` are ignored."""
    cleaned = text.strip().lower().removeprefix("0x")
    for sep in (" ", ":", "-", "\n", "\t"):
        cleaned = cleaned.replace(sep, "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        return None


def decode_payload(payload: object) -> list[Frame]:
    """Every beacon frame in a raw advertising payload (empty if malformed or not a beacon)."""
    fields = parse_ad_structures(payload)
    if fields is None:
        return []
    return decode_advert(fields.manufacturer_data, fields.service_data)
