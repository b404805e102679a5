"""The rotating beacon code: the documented scheme, slot edges, and every way a code fails."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from membership.beacon_code import (
    CODE_BYTES,
    SLOT_S,
    BeaconCodeError,
    Verdict,
    code_at,
    code_for,
    slot_of,
    verify,
)

KEY = b"store-binding-key-0123456789abcdef"
HWID = bytes.fromhex("32af519e88")
T0 = 1_790_000_100.0  # a slot boundary: 1_790_000_100 / 300 = 5_966_667 exactly
assert T0 % SLOT_S == 0


def test_the_documented_scheme() -> None:
    slot = 5_966_667
    expected = hmac.new(KEY, b"shopedge-beacon-v1" + HWID + slot.to_bytes(8, "big"), hashlib.sha256).digest()[
        :8
    ]
    assert code_for(KEY, HWID, slot) == expected
    assert len(expected) == CODE_BYTES == 8
    assert code_at(KEY, HWID, T0) == expected


def test_slot_edges() -> None:
    assert slot_of(T0) == slot_of(T0 + SLOT_S - 0.001)
    assert slot_of(T0 - 0.001) == slot_of(T0) - 1
    assert code_at(KEY, HWID, T0 - 0.001) != code_at(KEY, HWID, T0)
    assert code_at(KEY, HWID, T0 + SLOT_S - 0.001) == code_at(KEY, HWID, T0)


@pytest.mark.parametrize(
    ("advertised_at", "verified_at", "verdict"),
    [
        (T0, T0, Verdict.CURRENT),
        (T0, T0 + SLOT_S - 0.001, Verdict.CURRENT),  # last instant of the same slot
        (T0 - 0.001, T0, Verdict.PREVIOUS),  # seen just before the edge, handled just after
        (T0, T0 + SLOT_S, Verdict.PREVIOUS),  # first instant of the next slot
        (T0, T0 + 2 * SLOT_S - 0.001, Verdict.PREVIOUS),  # last instant of the next slot
        (T0, T0 + 2 * SLOT_S, Verdict.INVALID),  # two slots on: a recording
        (T0 + SLOT_S, T0, Verdict.INVALID),  # a code from the future is not ours
        (T0, T0 - 0.001, Verdict.INVALID),
    ],
)
def test_verify_at_current_or_previous_slot(
    advertised_at: float, verified_at: float, verdict: Verdict
) -> None:
    assert verify(KEY, HWID, code_at(KEY, HWID, advertised_at), verified_at) is verdict


def test_other_key_other_hwid_other_bytes_do_not_verify() -> None:
    dm = code_at(KEY, HWID, T0)
    assert verify(b"another-store-key", HWID, dm, T0) is Verdict.INVALID
    assert verify(KEY, bytes.fromhex("8adfaf4326"), dm, T0) is Verdict.INVALID
    assert verify(KEY, HWID, dm[:-1], T0) is Verdict.INVALID
    assert verify(KEY, HWID, dm + b"\x00", T0) is Verdict.INVALID
    assert verify(KEY, HWID, bytes([dm[0] ^ 1]) + dm[1:], T0) is Verdict.INVALID
    assert verify(b"", HWID, dm, T0) is Verdict.INVALID
    assert verify(KEY, HWID[:4], dm, T0) is Verdict.INVALID
    assert verify(KEY, HWID, b"\x00", T0) is Verdict.INVALID


def test_code_needs_a_key_and_a_hwid() -> None:
    with pytest.raises(BeaconCodeError, match=r"binding\.key"):
        code_for(b"", HWID, 1)
    with pytest.raises(BeaconCodeError, match="5 bytes"):
        code_for(KEY, HWID + b"\x00", 1)
    with pytest.raises(BeaconCodeError, match="slot"):
        code_for(KEY, HWID, -1)


def test_codes_fit_a_device_message() -> None:
    assert 1 <= len(code_for(KEY, HWID, 0)) <= 13


@given(now=st.floats(min_value=SLOT_S, max_value=4e9), delay=st.floats(min_value=0, max_value=4 * SLOT_S))
def test_a_code_verifies_exactly_while_it_is_current_or_previous(now: float, delay: float) -> None:
    verdict = verify(KEY, HWID, code_at(KEY, HWID, now), now + delay)
    lag = slot_of(now + delay) - slot_of(now)
    assert verdict is {0: Verdict.CURRENT, 1: Verdict.PREVIOUS}.get(lag, Verdict.INVALID)


@given(now=st.floats(min_value=0, max_value=4e9), hwid=st.binary(min_size=5, max_size=5))
def test_the_messaging_emulator_computes_the_same_code_on_its_own(now: float, hwid: bytes) -> None:
    from emulators.messaging.webhooks import counter_beacon_dm

    assert counter_beacon_dm(KEY.decode(), hwid.hex(), now) == code_at(KEY, hwid, now).hex()
