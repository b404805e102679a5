"""The beacon adapter: this counter advertises the store's LINE Beacon with the rotating code.

Joins the BLE driver's advertiser (which knows bytes and BlueZ, not keys) to the membership
room's rotating code (which knows keys and slots, not radios): the advertiser asks for the
device message every second and gets `code_at(binding key, HWID, now)`. Its condition goes to
the health board as component `beacon`. The scanner (`ble`) keeps running beside it on the
same adapter.
"""

from __future__ import annotations

from agent.context import AgentContext
from agent.wiring.health import DriverHealth
from drivers.ble.advertiser import BeaconAdvertiser
from drivers.ble.scanner import BlueZAdapterControl
from membership.beacon_code import code_at

__all__ = ["BeaconAdvertising"]


class BeaconAdvertising:
    """Supervised component `beacon` (only with `beacon.advertise = true`)."""

    name = "beacon"

    def __init__(self, ctx: AgentContext, *, advertiser: BeaconAdvertiser | None = None) -> None:
        config = ctx.config
        hwid = bytes.fromhex(config.beacon.hwid)
        key = config.binding.key.get_secret_value().encode()
        wall_clock = ctx.wall_clock

        def device_message() -> bytes:
            return code_at(key, hwid, wall_clock())

        adapter = config.ble.adapter
        self.advertiser = advertiser or BeaconAdvertiser(
            hwid=hwid,
            message=device_message,
            adapter=adapter,
            control=BlueZAdapterControl(adapter),
            health=DriverHealth(ctx.health),
        )
        self.advertiser.announce()

    async def run(self) -> None:
        await self.advertiser.run()
