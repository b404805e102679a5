"""Doctor row `line_beacon`: can this Pi be the store's LINE Beacon as configured?

The verdict is pure (`line_beacon_verdict`): advertising on or off, whether greetings are
configured, and the bluetoothd version, which decides whether BlueZ honours the 152.5 ms
interval the advertiser asks for (MinInterval/MaxInterval: 5.56+, and before 5.77 only with
`bluetoothd --experimental`). The shell only asks `bluetoothd --version`.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from agent.config import ShopEdgeConfig
from agent.doctor._rows import Environment, Row, Status

__all__ = ["bluetoothd_version", "check_line_beacon", "line_beacon_verdict"]

_BLUETOOTHD = (
    Path("/usr/libexec/bluetooth/bluetoothd"),  # Debian / Raspberry Pi OS
    Path("/usr/lib/bluetooth/bluetoothd"),
    Path("/usr/sbin/bluetoothd"),
)
_VERSION = re.compile(r"^(\d+)\.(\d+)")


def line_beacon_verdict(
    *, advertise: bool, hwid: str, greetings: int, version: tuple[int, int] | None
) -> Row:
    if not advertise:
        if greetings:
            return Row(
                check="line_beacon",
                status=Status.WARN,
                detail="greetings are configured but this counter does not advertise a beacon",
                hint="set [beacon] hwid and advertise = true (docs/beacon-greeting.md)",
            )
        return Row(check="line_beacon", status=Status.PASS, detail="off (beacon.advertise = false)")
    if version is None:
        return Row(
            check="line_beacon",
            status=Status.FAIL,
            detail=f"advertise is on for {hwid} but bluetoothd was not found",
            hint="install BlueZ (`apt install bluez`) and start bluetooth.service",
        )
    shown = f"{version[0]}.{version[1]}"
    if version < (5, 56):
        return Row(
            check="line_beacon",
            status=Status.WARN,
            detail=f"BlueZ {shown} ignores the advert interval: main.conf [LE] sets it",
            hint="upgrade BlueZ to 5.77+ or set MinAdvertisementInterval/MaxAdvertisementInterval",
        )
    if version < (5, 77):
        return Row(
            check="line_beacon",
            status=Status.WARN,
            detail=f"BlueZ {shown} honours the 152.5 ms interval only with --experimental",
            hint="run bluetoothd with --experimental (a systemd drop-in), or upgrade to 5.77+",
        )
    return Row(
        check="line_beacon",
        status=Status.PASS,
        detail=f"advertising {hwid} with BlueZ {shown} (152.5 ms interval)",
    )


async def bluetoothd_version(timeout_s: float) -> tuple[int, int] | None:
    found = shutil.which("bluetoothd")
    binary = Path(found) if found else next((p for p in _BLUETOOTHD if p.exists()), None)
    if binary is None:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            str(binary), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    except (OSError, TimeoutError):
        return None
    match = _VERSION.match(out.decode(errors="replace").strip())
    return (int(match[1]), int(match[2])) if match else None


async def check_line_beacon(config: ShopEdgeConfig, env: Environment) -> Row:
    advertise = config.beacon.advertise
    version = await bluetoothd_version(config.timeouts.local) if advertise else None
    return line_beacon_verdict(
        advertise=advertise, hwid=config.beacon.hwid, greetings=len(config.greetings), version=version
    )
