"""The checks of the counter's own parts: state directory, clock, fonts, display, BLE adapter,
outbox and the store beacon. Each verdict is a pure function beside its async shell."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.config import ShopEdgeConfig
from agent.doctor._rows import (
    CLOCK_FLOOR,
    LINE_API,
    MIN_FREE_MB,
    OUTBOX_WARN_DEPTH,
    Environment,
    Row,
    Status,
)
from drivers.ble.base import replay_path

# ---------------------------------------------------------------- state directory


def free_space_verdict(free_mb: float, budget_mb: int) -> tuple[Status, str]:
    if free_mb < MIN_FREE_MB:
        return Status.FAIL, "delete old files or use a larger SD card; SQLite needs room to write"
    if free_mb < budget_mb:
        return (
            Status.WARN,
            f"less free space than storage.disk_budget_mb ({budget_mb} MB): lower it or free space",
        )
    return Status.PASS, ""


def check_state_dir(config: ShopEdgeConfig, env: Environment) -> Row:
    state = config.storage.state_dir
    name = "state_dir"
    if not state.is_dir():
        return Row(
            check=name,
            status=Status.FAIL,
            detail=f"{state} does not exist",
            hint="run `shopedge provision` (or systemd's StateDirectory= creates it for the service)",
        )
    probe = state / f".doctor-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        return Row(
            check=name,
            status=Status.FAIL,
            detail=f"{state} is not writable: {exc.strerror or exc}",
            hint=f"make it writable by the service user: `chown -R shopedge: {state}` (or remount rw)",
        )
    usage = shutil.disk_usage(state)
    free_mb = usage.free / 2**20
    status, hint = free_space_verdict(free_mb, config.storage.disk_budget_mb)
    return Row(check=name, status=status, detail=f"{state} writable, {free_mb:.0f} MB free", hint=hint)


# ---------------------------------------------------------------- clock

# ntp_adjtime(2) return values; TIME_ERROR means the kernel clock is not synchronised.
_TIME_ERROR = 5


# Skew against LINE's servers (HTTP Date, 1 s resolution): beyond a minute signed requests and
# token lifetimes are at risk; beyond ten seconds the clock is drifting without NTP.
SKEW_FAIL_S = 60.0
SKEW_WARN_S = 10.0
_NTP_HINT = "enable NTP: `timedatectl set-ntp true` (systemd-timesyncd) and check the network"


def clock_verdict(*, now: float, kernel_state: int | None, skew: float | None = None) -> Row:
    """Wrong (before this release, or far from LINE's clock) fails; unsynchronised warns.

    Args:
        now: the local wall clock.
        kernel_state: ntp_adjtime(2)'s return value, None when unknown.
        skew: local minus LINE's Date header in seconds, None when LINE was not reachable.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    against = "" if skew is None else f"; {skew:+.0f} s from LINE's clock"
    if now < CLOCK_FLOOR:
        return Row(
            check="clock",
            status=Status.FAIL,
            detail=f"clock reads {stamp}, before this release",
            hint=_NTP_HINT + "; binding tokens and LINE Pay nonces fail with a wrong clock",
        )
    if skew is not None and abs(skew) > SKEW_FAIL_S:
        return Row(check="clock", status=Status.FAIL, detail=f"{stamp}{against}", hint=_NTP_HINT)
    if skew is not None and abs(skew) > SKEW_WARN_S:
        return Row(check="clock", status=Status.WARN, detail=f"{stamp}{against}", hint=_NTP_HINT)
    if kernel_state is None:
        return Row(
            check="clock",
            status=Status.WARN,
            detail=f"{stamp}; sync state unknown{against}",
            hint="run `timedatectl`",
        )
    if kernel_state == _TIME_ERROR:
        return Row(
            check="clock",
            status=Status.WARN,
            detail=f"{stamp}; kernel clock not synchronised{against}",
            hint=_NTP_HINT,
        )
    return Row(check="clock", status=Status.PASS, detail=f"{stamp}; synchronised{against}")


async def _line_skew(config: ShopEdgeConfig) -> float | None:
    """Local clock minus the Date header of LINE's API (None when it cannot be reached)."""
    import email.utils

    import aiohttp

    base = (config.line.api_base or LINE_API).rstrip("/")
    timeout = aiohttp.ClientTimeout(total=config.timeouts.line_api)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.head(base + "/") as response:
            date = response.headers.get("Date")
            received = time.time()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    if not date:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
    return received - server


def _kernel_clock_state() -> int | None:
    """ntp_adjtime(2) with no changes: the kernel's own view of synchronisation."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex (208 bytes on 64-bit), modes = 0
        state = int(libc.ntp_adjtime(buf))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state


async def check_clock(config: ShopEdgeConfig, env: Environment) -> Row:
    skew = await _line_skew(config)
    return clock_verdict(now=time.time(), kernel_state=_kernel_clock_state(), skew=skew)


# ---------------------------------------------------------------- fonts


def check_fonts(config: ShopEdgeConfig, env: Environment) -> Row:
    """The display's own font discovery, so this row says exactly what the screens will use."""
    from drivers.display.fonts import FontNotFoundError, find_fonts

    try:
        fonts = find_fonts(config.display.font_path, candidates=env.font_candidates())
    except FontNotFoundError as exc:
        return Row(
            check="fonts",
            status=Status.FAIL,
            detail=str(exc).split("; install")[0],
            hint="install a CJK font: `sudo apt-get install fonts-noto-cjk` (or set display.font_path)",
        )
    face = fonts.regular
    screen = (
        f"screen font for {len(fonts.screen.chars)} characters"
        if fonts.screen is not None
        else "no screen font: every text drawn by the full font (~10 MB more resident memory)"
    )
    return Row(check="fonts", status=Status.PASS, detail=f"{face.path} (face {face.index}); {screen}")


# ---------------------------------------------------------------- display


def check_display(config: ShopEdgeConfig, env: Environment) -> Row:
    display = config.display
    name = "display"
    if display.driver == "web":
        browser = next((b for b in env.chromium_names if shutil.which(b)), None)
        if browser is None:
            return Row(
                check=name,
                status=Status.WARN,
                detail=f"web display on {display.listen}; no Chromium here for the kiosk",
                hint="install chromium (deploy/install-pi.sh) or point another screen at the display URL",
            )
        return Row(
            check=name, status=Status.PASS, detail=f"web display on {display.listen}, kiosk: {browser}"
        )
    if display.driver == "png":
        target = display.png_path
        if target is None:
            return Row(
                check=name,
                status=Status.FAIL,
                detail="png driver without display.png_path",
                hint="set display.png_path",
            )
        if not os.access(target.parent, os.W_OK):
            return Row(
                check=name,
                status=Status.FAIL,
                detail=f"{target.parent} not writable",
                hint=f"make {target.parent} writable by the service user",
            )
        return Row(check=name, status=Status.PASS, detail=f"png to {target}")
    if display.driver == "framebuffer":
        device = Path("/dev") / display.framebuffer
        if not os.access(device, os.W_OK):
            return Row(
                check=name,
                status=Status.FAIL,
                detail=f"{device} missing or not writable",
                hint="enable the display (dtoverlay) and add the service user to group video",
            )
        return Row(check=name, status=Status.PASS, detail=f"framebuffer {device}")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return Row(
            check=name,
            status=Status.FAIL,
            detail="window driver without a desktop session",
            hint='use display.driver = "web" on a kiosk, or run inside a desktop session',
        )
    return Row(check=name, status=Status.PASS, detail="window driver with a desktop session")


# ---------------------------------------------------------------- BLE


async def _bluez_adapter(adapter: str, address: str, wait_s: float) -> tuple[bool, bool]:
    """(present, powered) for /org/bluez/<adapter>, from BlueZ's object manager."""
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    bus_args: dict[str, Any] = {"bus_address": address} if address else {"bus_type": BusType.SYSTEM}
    async with asyncio.timeout(wait_s):
        bus = await MessageBus(**bus_args).connect()
        try:
            reply = await bus.call(
                Message(
                    destination="org.bluez",
                    path="/",
                    interface="org.freedesktop.DBus.ObjectManager",
                    member="GetManagedObjects",
                )
            )
        finally:
            bus.disconnect()
    if reply is None or reply.message_type == MessageType.ERROR:
        error = reply.error_name if reply is not None else "no reply"
        raise ConnectionError(f"BlueZ did not answer ({error})")
    objects = reply.body[0]
    props = objects.get(f"/org/bluez/{adapter}", {}).get("org.bluez.Adapter1")
    if props is None:
        return False, False
    powered = props.get("Powered")
    return True, bool(powered.value if powered is not None else False)


async def check_ble(config: ShopEdgeConfig, env: Environment) -> Row:
    ble = config.ble
    if ble.driver == "replay":
        capture = replay_path(ble)  # what the daemon plays: the bundled capture when unset
        if not capture.is_file():
            return Row(
                check="ble",
                status=Status.FAIL,
                detail=f"replay file {capture} not found",
                hint='set ble.replay_file to a capture, or ble.driver = "bleak" on a Pi',
            )
        return Row(check="ble", status=Status.PASS, detail=f"replaying {capture}")
    try:
        present, powered = await _bluez_adapter(ble.adapter, env.system_bus, config.timeouts.local)
    except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
        return Row(
            check="ble",
            status=Status.FAIL,
            detail=f"cannot reach BlueZ on the system D-Bus: {exc!r}",
            hint="`systemctl start bluetooth`; the service user must be in group bluetooth",
        )
    except Exception as exc:  # dbus-fast raises its own error types for bus failures
        return Row(
            check="ble",
            status=Status.FAIL,
            detail=f"BlueZ query failed: {exc!r}",
            hint="`systemctl status bluetooth`",
        )
    if not present:
        return Row(
            check="ble",
            status=Status.FAIL,
            detail=f"no adapter {ble.adapter}",
            hint="check `bluetoothctl list`; on a Pi, `rfkill unblock bluetooth`",
        )
    if not powered:
        return Row(
            check="ble",
            status=Status.FAIL,
            detail=f"{ble.adapter} is powered off",
            hint="`bluetoothctl power on` (or `rfkill unblock bluetooth`)",
        )
    return Row(check="ble", status=Status.PASS, detail=f"{ble.adapter} present and powered")


# ---------------------------------------------------------------- outbox


def _outbox_stats_blocking(path: Path, now: float) -> dict[str, Any]:
    # Read-only on purpose: `Outbox.open()` ends the leases of "the previous process", which
    # would disturb a running agent. The outbox's own read-only connection and stats query
    # are used instead (its public API has no read-only inspection yet).
    from offline_queue import connect_blocking, stats_blocking

    conn = connect_blocking(path, read_only=True)
    try:
        streams = stats_blocking(conn, now)
    finally:
        conn.close()
    return {
        "path": str(path),
        "exists": True,
        "total": sum(s.depth for s in streams),
        "dead_letters": sum(s.dead for s in streams),
        "streams": {
            s.stream: {
                "depth": s.depth,
                "in_flight": s.in_flight,
                "waiting_retry": s.waiting_retry,
                "dead": s.dead,
                "oldest_at": s.oldest_at,
                "bytes": s.nbytes,
            }
            for s in streams
        },
    }


async def outbox_stats(config: ShopEdgeConfig) -> dict[str, Any]:
    """Depth and dead letters per stream, read without creating or changing anything."""
    path = config.db_path
    if not path.exists():
        return {"path": str(path), "exists": False}
    return await asyncio.to_thread(_outbox_stats_blocking, path, time.time())


def outbox_verdict(stats: dict[str, Any]) -> Row:
    if not stats.get("exists"):
        return Row(
            check="outbox", status=Status.PASS, detail=f"{stats['path']} not created yet (agent never ran)"
        )
    total = int(stats.get("total", 0))
    dead = int(stats.get("dead_letters", 0))
    detail = f"{total} queued" + (f", {dead} dead letters" if "dead_letters" in stats else "")
    if dead:
        return Row(
            check="outbox",
            status=Status.WARN,
            detail=detail,
            hint="inspect with `shopedge queue dead-letters` and retry with `shopedge queue retry`",
        )
    if total >= OUTBOX_WARN_DEPTH:
        return Row(
            check="outbox",
            status=Status.WARN,
            detail=detail,
            hint="records are not leaving: check the broker and LINE rows above",
        )
    return Row(check="outbox", status=Status.PASS, detail=detail)


async def check_outbox(config: ShopEdgeConfig, env: Environment) -> Row:
    state = config.storage.state_dir
    if state.is_dir() and not os.access(state, os.W_OK):
        # SQLite cannot even read a WAL database whose directory is read-only; the cause is
        # reported (with its fix) by the state_dir row.
        return Row(
            check="outbox",
            status=Status.WARN,
            detail="not inspected: the state dir is read-only",
            hint="fix the state_dir row first",
        )
    try:
        stats = await outbox_stats(config)
    except Exception as exc:  # the outbox's own errors: a corrupt or locked DB
        return Row(
            check="outbox",
            status=Status.FAIL,
            detail=f"cannot read the outbox: {exc!r}",
            hint="stop the agent and run `shopedge queue stats`; restore from backup if corrupt",
        )
    return outbox_verdict(stats)


# ---------------------------------------------------------------- store beacon


def beacon_verdict(hwids: Sequence[str], status: dict[str, Any] | None) -> Row:
    """From the running agent's /status.json: every configured store beacon heard recently?

    A silent beacon is a warning, not a fail: the shop still sells; only presence and the
    friend prompts suffer.
    """
    if not hwids:
        return Row(
            check="beacon",
            status=Status.WARN,
            detail="no store beacon configured",
            hint="set ble.store_beacon_hwids (`shopedge provision`) so presence works",
        )
    if status is None:
        return Row(
            check="beacon",
            status=Status.WARN,
            detail="agent not running: beacon state unknown",
            hint="`systemctl start shopedge`, then re-run doctor",
        )
    states = {str(b.get("hwid")): b for b in status.get("beacons", []) if isinstance(b, dict)}
    silent = [hwid for hwid in hwids if states.get(hwid, {}).get("silent", True)]
    if silent:
        return Row(
            check="beacon",
            status=Status.WARN,
            detail=f"not heard recently: {', '.join(silent)}",
            hint="check the beacon's power/battery and that it sits within a few metres of the Pi",
        )
    return Row(check="beacon", status=Status.PASS, detail=f"heard recently: {', '.join(hwids)}")


async def check_beacon(config: ShopEdgeConfig, env: Environment) -> Row:
    import aiohttp

    from agent.config import split_listen

    hwids = config.ble.store_beacon_hwids
    if not hwids:
        return beacon_verdict(hwids, None)
    host, port = split_listen(config.pos.listen)
    host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/status.json"
    timeout = aiohttp.ClientTimeout(total=config.timeouts.local)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            body = await response.json(content_type=None) if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, OSError, json.JSONDecodeError):
        body = None
    return beacon_verdict(hwids, body if isinstance(body, dict) else None)


