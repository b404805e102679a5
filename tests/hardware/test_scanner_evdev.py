"""On a real till with a keyboard-wedge barcode scanner (run with --hw, and set
SHOPEDGE_SCANNER_DEVICE to its /dev/input/by-id/...-event-kbd path): scan a LINE Pay My Code
(the sandbox generator gives one) within 60 s and the driver yields its 18 digits."""

from __future__ import annotations

import asyncio
import os

import pytest

from drivers.scanner import ONE_TIME_KEY
from drivers.scanner.evdev_scanner import EvdevScanner

pytestmark = pytest.mark.hw


async def test_real_scanner_reads_a_one_time_key() -> None:
    device = os.environ.get("SHOPEDGE_SCANNER_DEVICE")
    if not device:
        pytest.skip("set SHOPEDGE_SCANNER_DEVICE to the scanner's /dev/input/by-id/ path")
    async with EvdevScanner(device) as scanner:
        print("scan a LINE Pay My Code now")
        key = await asyncio.wait_for(anext(aiter(scanner.codes())), timeout=60)
    assert ONE_TIME_KEY.match(key)
