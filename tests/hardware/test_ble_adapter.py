"""On a real Pi with a Bluetooth adapter (run with --hw): the bleak shell scans and hears adverts."""

from __future__ import annotations

import pytest

from base.health import Level
from drivers.ble.frames import decode_advert
from drivers.ble.scanner import BleakSource

pytestmark = pytest.mark.hw


@pytest.mark.parametrize("mode", ["active", "passive"])
async def test_real_adapter_hears_adverts_within_30_s(mode: str) -> None:
    async with BleakSource(adapter="hci0", scanning_mode=mode) as source:  # type: ignore[arg-type]
        heard = 0
        for _ in range(30):
            advert = await source.next_advert(1.0)
            if advert is not None:
                decode_advert(advert.manufacturer_data, advert.service_data)
                heard += 1
        assert heard > 0, source.status
        assert source.status.level is Level.GREEN
