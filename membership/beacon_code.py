"""The rotating code in the counter beacon's device message: telling the real counter from a copy.

LINE Simple Beacon has no protection against impersonation: any radio can send the store's
HWID. So the device message the counter advertises is a code only the store can make: a
truncated HMAC-SHA256, under the store's binding key, of the HWID and the current time slot.
A `beacon` webhook whose `dm` is the code of the current or the previous slot came from a
phone that saw the real counter within the last slot or two; anything else is a copy, a
recording older than that, or noise.

The scheme, byte for byte (the Messaging emulator re-implements it from this docstring):

    slot = floor(unix_seconds / SLOT_S)                      SLOT_S = 300
    msg  = b"shopedge-beacon-v1" || hwid (5 bytes) || slot as 8 bytes big-endian
    dm   = HMAC-SHA256(binding key as UTF-8, msg)[:CODE_BYTES]  CODE_BYTES = 8

Pure functions; the clock and the key come from the caller.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

__all__ = [
    "CODE_BYTES",
    "DOMAIN",
    "SLOT_S",
    "BeaconCodeError",
    "Verdict",
    "code_at",
    "code_for",
    "slot_of",
    "verify",
]

SLOT_S = 300
"""Five minutes: long enough that a phone's sighting near the end of a slot still verifies when
its webhook arrives (one previous slot is accepted), short enough that a recorded code is
useless to a copy within 10 minutes at the most."""

CODE_BYTES = 8
"""64 bits of the HMAC: guessing a valid code takes 2**63 tries on average; 8 of LINE's 13
device-message bytes leaves the frame at 16 bytes."""

DOMAIN = b"shopedge-beacon-v1"
"""Separates beacon codes from the binding tokens made under the same key."""


class BeaconCodeError(ValueError):
    """The code cannot be made: no key, or a HWID that is not 5 bytes."""


class Verdict(StrEnum):
    CURRENT = "current"  # the code of the slot `now` falls in
    PREVIOUS = "previous"  # the code of the slot before: seen just before the edge
    INVALID = "invalid"  # any other code: a copy, an old recording, or noise


def slot_of(unix_seconds: float) -> int:
    """The time slot a wall-clock instant falls in."""
    return int(unix_seconds // SLOT_S)


def code_for(key: bytes, hwid: bytes, slot: int) -> bytes:
    """The device message the counter with this HWID advertises during `slot`."""
    if not key:
        raise BeaconCodeError("no binding key: set binding.key to sign the beacon's device message")
    if len(hwid) != 5:
        raise BeaconCodeError(f"HWID must be 5 bytes, got {len(hwid)}")
    if slot < 0:
        raise BeaconCodeError(f"slot must be >= 0, got {slot}")
    message = DOMAIN + hwid + slot.to_bytes(8, "big")
    return hmac.new(key, message, hashlib.sha256).digest()[:CODE_BYTES]


def code_at(key: bytes, hwid: bytes, unix_seconds: float) -> bytes:
    """The device message to advertise at this instant."""
    return code_for(key, hwid, slot_of(unix_seconds))


def verify(key: bytes, hwid: bytes, dm: bytes, now: float) -> Verdict:
    """Whether `dm` is this HWID's code for the slot of `now` or the slot before it.

    Compared in constant time. An empty key or a malformed HWID verifies nothing (INVALID)
    rather than raising: the caller is handling untrusted webhook input.
    """
    if not key or len(hwid) != 5 or len(dm) != CODE_BYTES:
        return Verdict.INVALID
    slot = slot_of(now)
    if hmac.compare_digest(code_for(key, hwid, slot), dm):
        return Verdict.CURRENT
    if slot > 0 and hmac.compare_digest(code_for(key, hwid, slot - 1), dm):
        return Verdict.PREVIOUS
    return Verdict.INVALID
