"""Building the LINE Simple Beacon advertising data the counter sends (the parser is in frames.py).

Owns the byte layout of what the Pi broadcasts as the store's LINE Beacon, after LINE's public
specification (github.com/line/line-simple-beacon, README.en.md):

- AD Flags (never 0x00; LINE's examples use 0x06),
- AD "complete list of 16-bit service UUIDs" holding 0xFE6F (little-endian on the air: 6F FE),
- AD Service Data for 0xFE6F holding the frame: frame type 0x02, the 5-byte HWID issued in
  LINE Official Account Manager, measured TxPower 0x7F, and a 1-13 byte device message.

Pure functions over bytes; bad input raises `SimpleBeaconError` naming what is wrong (the
parser in frames.py, by contrast, never raises: it reads what other radios send).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ADV_DATA_MAX",
    "DM_MAX",
    "FLAGS_LE_GENERAL_NO_BREDR",
    "FRAME_TYPE",
    "LINE_SERVICE_UUID16",
    "TX_POWER",
    "SimpleBeaconAdvert",
    "SimpleBeaconError",
    "advert",
    "frame",
    "parse_device_message",
    "parse_hwid",
]

LINE_SERVICE_UUID16 = 0xFE6F
FRAME_TYPE = 0x02
TX_POWER = 0x7F
HWID_LEN = 5
DM_MIN = 1
DM_MAX = 13
ADV_DATA_MAX = 31  # legacy advertising data (Bluetooth 4.0 Vol 3 Part C 11): LINE recommends 4.0
FLAGS_LE_GENERAL_NO_BREDR = 0x06  # LE General Discoverable (0x02) | BR/EDR Not Supported (0x04)

_AD_FLAGS = 0x01
_AD_UUID16_COMPLETE = 0x03
_AD_SERVICE_DATA16 = 0x16
_HEX_SEPARATORS = re.compile(r"[\s:\-]")


class SimpleBeaconError(ValueError):
    """A HWID, device message or flags value the LINE Simple Beacon specification does not allow."""


def _hex(text: str, what: str) -> bytes:
    cleaned = _HEX_SEPARATORS.sub("", text.strip()).lower().removeprefix("0x")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise SimpleBeaconError(f"{what} must be hex digits, got {text!r}") from None


def parse_hwid(text: str) -> bytes:
    """The 5 HWID bytes from the 10 hex digits LINE Official Account Manager shows."""
    raw = _hex(text, "HWID")
    if len(raw) != HWID_LEN:
        raise SimpleBeaconError(f"HWID must be {HWID_LEN} bytes (10 hex digits), got {len(raw)} bytes")
    return raw


def parse_device_message(text: str) -> bytes:
    """A device message given as hex, checked for LINE's 1-13 bytes (counting bytes, not digits)."""
    return _check_dm(_hex(text, "device message"))


def _check_dm(message: bytes) -> bytes:
    if not DM_MIN <= len(message) <= DM_MAX:
        raise SimpleBeaconError(
            f"device message must be {DM_MIN}-{DM_MAX} bytes (use 00 when unused), got {len(message)}"
        )
    return message


def frame(hwid: bytes, message: bytes) -> bytes:
    """The Simple Beacon frame (8-20 bytes) carried in the 0xFE6F service data."""
    if len(hwid) != HWID_LEN:
        raise SimpleBeaconError(f"HWID must be {HWID_LEN} bytes, got {len(hwid)}")
    return bytes([FRAME_TYPE]) + hwid + bytes([TX_POWER]) + _check_dm(message)


def _ad(ad_type: int, data: bytes) -> bytes:
    return bytes([len(data) + 1, ad_type]) + data


@dataclass(frozen=True, kw_only=True, slots=True)
class SimpleBeaconAdvert:
    """The three AD structures of one Simple Beacon advert, in order, and what BlueZ needs.

    BlueZ builds the advertising data itself from an LEAdvertisement1 object: `service_uuid`
    goes in ServiceUUIDs, `frame` in ServiceData; the Flags AD comes from the kernel (the
    D-Bus `Data` property refuses the Flags type).
    """

    flags: bytes
    service_uuids: bytes
    service_data: bytes
    frame: bytes

    @property
    def structures(self) -> tuple[bytes, bytes, bytes]:
        return (self.flags, self.service_uuids, self.service_data)

    @property
    def significant(self) -> bytes:
        """The significant part of the advertising data (what carries information)."""
        return b"".join(self.structures)

    @property
    def payload(self) -> bytes:
        """The whole 31-byte advertising data: the significant part, then 0x00 padding (LINE's
        example 2 shows the non-significant part as zeros)."""
        return self.significant.ljust(ADV_DATA_MAX, b"\x00")

    @property
    def service_uuid(self) -> str:
        return f"{LINE_SERVICE_UUID16:04x}"


def advert(hwid: bytes, message: bytes, *, flags: int = FLAGS_LE_GENERAL_NO_BREDR) -> SimpleBeaconAdvert:
    """The advertising data for this HWID and device message."""
    if not 0x01 <= flags <= 0xFF:
        raise SimpleBeaconError(f"flags must be 0x01-0xFF (LINE forbids 0x00), got {flags:#x}")
    body = frame(hwid, message)
    uuid_le = LINE_SERVICE_UUID16.to_bytes(2, "little")
    built = SimpleBeaconAdvert(
        flags=_ad(_AD_FLAGS, bytes([flags])),
        service_uuids=_ad(_AD_UUID16_COMPLETE, uuid_le),
        service_data=_ad(_AD_SERVICE_DATA16, uuid_le + body),
        frame=body,
    )
    # 3 + 4 + (4 + 20) = 31 at most: a valid frame always fits legacy advertising.
    assert len(built.significant) <= ADV_DATA_MAX
    return built
