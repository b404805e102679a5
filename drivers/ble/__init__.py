"""Bluetooth LE beacons: frame parsers, the presence engine, and scanner/replay sources.

Importing this package never imports bleak or touches BlueZ; only `open_source` with
`driver = "bleak"` does.
"""

from drivers.ble.frames import Frame, decode_advert, decode_payload, frame_to_dict

__all__ = ["Frame", "decode_advert", "decode_payload", "frame_to_dict"]
