"""`shopedge doctor`: one row per check, each pass/warn/fail with a fix hint a technician can act on.

Owns the checks and the rule for reading them: a check is a small function of the config (and
an `Environment` saying where to look), it never raises, and its row names what it looked at,
what it found and, unless it passed, the one thing to do next. The verdict logic (thresholds,
LINE return codes, clock state) is kept in pure functions beside each check so it is tested
without a network; the async shells do the looking, each bounded by a timeout from
`config.timeouts`.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import ctypes
import ctypes.util
import hashlib
import hmac
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.config import ConfigError, ShopEdgeConfig, load_config

__all__ = [
    "CHECKS",
    "Environment",
    "Row",
    "Status",
    "beacon_verdict",
    "check_beacon",
    "check_ble",
    "check_broker",
    "check_config",
    "check_line_token",
    "check_linepay",
    "check_outbox",
    "clock_verdict",
    "exit_code",
    "free_space_verdict",
    "line_token_verdict",
    "linepay_signature",
    "linepay_verdict",
    "outbox_stats",
    "outbox_verdict",
    "render_table",
    "run_checks",
    "run_doctor",
]

LINEPAY_HOSTS = {"sandbox": "https://sandbox-api-pay.line.me", "production": "https://api-pay.line.me"}
LINE_API = "https://api.line.me"
# Free space below this fails outright: SQLite needs room for its WAL and a checkpoint.
MIN_FREE_MB = 50
# Tokens and LINE Pay nonces are useless with a clock before this build's release (UTC).
CLOCK_FLOOR = float(calendar.timegm((2026, 1, 1, 0, 0, 0)))
# At the default batch of 50 per MQTT message this is 20 batches: a backlog that is not
# draining, not a brief outage. A warning, because records wait safely on disk.
OUTBOX_WARN_DEPTH = 1000
SYSTEM_FONTS = Path("/usr/share/fonts")


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a check verdict, not a password
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, kw_only=True)
class Row:
    """One check's result; `hint` says what to do when it did not pass."""

    check: str
    status: Status
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, kw_only=True)
class Environment:
    """Where the doctor looks on this machine (tests point it elsewhere)."""

    font_roots: tuple[Path, ...] = (SYSTEM_FONTS,)
    chromium_names: tuple[str, ...] = ("chromium", "chromium-browser")
    system_bus: str = field(default_factory=lambda: os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", ""))

    @classmethod
    def from_environ(cls) -> Environment:
        """SHOPEDGE_FONT_DIRS (colon separated) replaces /usr/share/fonts as the font root."""
        dirs = os.environ.get("SHOPEDGE_FONT_DIRS")
        if dirs is None:
            return cls()
        return cls(font_roots=tuple(Path(d) for d in dirs.split(":") if d))

    def font_candidates(self) -> tuple[tuple[str, str], ...]:
        """The display's candidate font paths, under each font root."""
        from drivers.display.fonts import CANDIDATES

        def moved(path: str, root: Path) -> str:
            rel = Path(path).relative_to(SYSTEM_FONTS) if path.startswith(str(SYSTEM_FONTS)) else None
            return str(root / rel) if rel is not None else path

        return tuple((moved(r, root), moved(b, root)) for root in self.font_roots for r, b in CANDIDATES)


def exit_code(rows: Sequence[Row]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(row.status is Status.FAIL for row in rows) else 0


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
    return Row(check="fonts", status=Status.PASS, detail=f"{face.path} (face {face.index})")


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
        if ble.replay_file is None or not ble.replay_file.is_file():
            return Row(
                check="ble",
                status=Status.FAIL,
                detail=f"replay file {ble.replay_file} not found",
                hint='set ble.replay_file to a capture, or ble.driver = "bleak" on a Pi',
            )
        return Row(check="ble", status=Status.PASS, detail=f"replaying {ble.replay_file}")
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


# ---------------------------------------------------------------- MQTT broker


async def check_broker(config: ShopEdgeConfig, env: Environment) -> Row:
    import ssl

    import aiomqtt

    mqtt = config.mqtt
    where = f"{mqtt.host}:{mqtt.port}"
    if not mqtt.enabled:
        return Row(
            check="broker",
            status=Status.WARN,
            detail="mqtt.enabled = false: nothing syncs to the cloud",
            hint="set mqtt.enabled = true once the broker is ready",
        )
    context = None
    if mqtt.tls:
        context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
        if mqtt.cert_file and mqtt.key_file:
            context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file))
    client = aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.username or None,
        password=mqtt.password.get_secret_value() or None,
        # Not the agent's client id: connecting as it would take over the agent's session.
        identifier=f"{config.device.device_id}-doctor-{uuid.uuid4().hex[:6]}",
        tls_context=context,
        timeout=config.timeouts.mqtt_connect,
    )
    try:
        async with asyncio.timeout(config.timeouts.mqtt_connect):
            async with client:
                pass
    except aiomqtt.MqttCodeError as exc:
        return Row(
            check="broker",
            status=Status.FAIL,
            detail=f"{where} refused the connection: {exc}",
            hint="check mqtt.username and mqtt.password (and the broker's ACL for this device)",
        )
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return Row(
            check="broker",
            status=Status.FAIL,
            detail=f"{where} unreachable: {exc or type(exc).__name__}",
            hint="check mqtt.host/mqtt.port, the network, and that the broker is running",
        )
    return Row(check="broker", status=Status.PASS, detail=f"connected and authorised at {where}")


# ---------------------------------------------------------------- LINE Messaging API


def line_token_verdict(status: int, body: dict[str, Any], expected_basic_id: str) -> Row:
    if status == 200:
        basic = str(body.get("basicId", ""))
        name = str(body.get("displayName", ""))
        if expected_basic_id and basic.removeprefix("@") != expected_basic_id:
            return Row(
                check="line_token",
                status=Status.WARN,
                detail=f"token belongs to {basic} ({name}), config says @{expected_basic_id}",
                hint="fix line.oa_basic_id or use the token of the right Official Account",
            )
        return Row(check="line_token", status=Status.PASS, detail=f"bot {basic} ({name})")
    if status == 401:
        return Row(
            check="line_token",
            status=Status.FAIL,
            detail=f"token rejected (401): {body.get('message', '')}",
            hint="issue a new long-lived channel access token in the LINE Developers console "
            "(Messaging API tab) and run `shopedge provision`",
        )
    return Row(
        check="line_token",
        status=Status.FAIL,
        detail=f"bot info answered {status}: {body}",
        hint="retry later; if it persists check status.line.me",
    )


async def check_line_token(config: ShopEdgeConfig, env: Environment) -> Row:
    import aiohttp

    token = config.line.channel_access_token.get_secret_value()
    if not token:
        return Row(
            check="line_token",
            status=Status.FAIL,
            detail="line.channel_access_token is empty",
            hint="run `shopedge provision` with the Messaging API channel access token",
        )
    base = (config.line.api_base or LINE_API).rstrip("/")
    timeout = aiohttp.ClientTimeout(total=config.timeouts.line_api)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{base}/v2/bot/info", headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            status = response.status
            try:
                body = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                body = {}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Row(
            check="line_token",
            status=Status.FAIL,
            detail=f"{base} unreachable: {exc!r}",
            hint="check the network / DNS; the agent keeps queueing until LINE is reachable",
        )
    return line_token_verdict(status, body if isinstance(body, dict) else {}, config.line.oa_basic_id)


# ---------------------------------------------------------------- LINE Pay


def linepay_signature(secret: str, path: str, query: str, nonce: str) -> str:
    """LINE Pay v4 GET signature: Base64(HMAC-SHA256(secret, secret + path + query + nonce))."""
    message = (secret + path + query + nonce).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def linepay_verdict(http_status: int, body: dict[str, Any]) -> Row:
    """1150 ("no history") for a random order id proves the credentials; 1106 means they are wrong."""
    code = str(body.get("returnCode", ""))
    message = str(body.get("returnMessage", ""))
    if code == "1150":
        return Row(
            check="linepay", status=Status.PASS, detail="signed status check accepted (1150 no history)"
        )
    if code == "1106":
        return Row(
            check="linepay",
            status=Status.FAIL,
            detail=f"LINE Pay rejected the credentials: 1106 {message}",
            hint="check linepay.channel_id and linepay.channel_secret in Merchant Center, and that "
            "this shop's public IP is whitelisted there",
        )
    if code == "0000":
        return Row(
            check="linepay",
            status=Status.WARN,
            detail="a random order id exists?! (0000)",
            hint="re-run doctor",
        )
    return Row(
        check="linepay",
        status=Status.FAIL,
        detail=f"unexpected answer {http_status} {code} {message}",
        hint="check linepay.mode and linepay.api_base; retry later",
    )


async def check_linepay(config: ShopEdgeConfig, env: Environment) -> Row:
    import aiohttp

    pay = config.linepay
    secret = pay.channel_secret.get_secret_value()
    if not pay.channel_id or not secret:
        return Row(
            check="linepay",
            status=Status.FAIL,
            detail="linepay.channel_id or channel_secret is empty",
            hint="run `shopedge provision` with the LINE Pay channel id and secret",
        )
    base = (pay.api_base or LINEPAY_HOSTS[pay.mode]).rstrip("/")
    order_id = f"doctor-{uuid.uuid4().hex}"
    path = f"/v4/payments/orders/{quote(order_id, safe='')}/check"
    nonce = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-LINE-ChannelId": pay.channel_id,
        "X-LINE-Authorization-Nonce": nonce,
        "X-LINE-Authorization": linepay_signature(secret, path, "", nonce),
    }
    if pay.merchant_device_profile_id:
        headers["X-LINE-MerchantDeviceProfileId"] = pay.merchant_device_profile_id
        headers["X-LINE-MerchantDeviceType"] = pay.merchant_device_type
    timeout = aiohttp.ClientTimeout(
        total=config.timeouts.linepay_check, connect=config.timeouts.linepay_connect
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(base + path, headers=headers) as response,
        ):
            status = response.status
            try:
                body = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                body = {}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Row(
            check="linepay",
            status=Status.FAIL,
            detail=f"{base} unreachable: {exc!r}",
            hint="check the network; payments cannot be taken while LINE Pay is unreachable",
        )
    return linepay_verdict(status, body if isinstance(body, dict) else {})


# ---------------------------------------------------------------- outbox


def _outbox_stats_blocking(path: Path, now: float) -> dict[str, Any]:
    # Read-only on purpose: `Outbox.open()` ends the leases of "the previous process", which
    # would disturb a running agent. The outbox's own read-only connection and stats query
    # are used instead (its public API has no read-only inspection yet).
    from offline_queue._store import connect_blocking, stats_blocking

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
            hint="inspect with `shopedge queue dead` and retry with `shopedge queue retry`",
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


# ---------------------------------------------------------------- running the checks

Check = Callable[[ShopEdgeConfig, Environment], Row | Awaitable[Row]]

CHECKS: dict[str, Check] = {
    "state_dir": check_state_dir,
    "clock": check_clock,
    "ble": check_ble,
    "display": check_display,
    "fonts": check_fonts,
    "broker": check_broker,
    "line_token": check_line_token,
    "linepay": check_linepay,
    "outbox": check_outbox,
    "beacon": check_beacon,
}


async def _run_one(name: str, check: Check, config: ShopEdgeConfig, env: Environment) -> Row:
    try:
        if asyncio.iscoroutinefunction(check):
            return await check(config, env)  # type: ignore[no-any-return]
        return await asyncio.to_thread(check, config, env)  # type: ignore[arg-type]
    except Exception as exc:  # a broken check is a failed row, never a traceback
        return Row(
            check=name, status=Status.FAIL, detail=f"check crashed: {exc!r}", hint="report this as a bug"
        )


async def run_checks(
    config: ShopEdgeConfig, env: Environment | None = None, *, only: Sequence[str] | None = None
) -> list[Row]:
    """Run the checks (all, or `only` these names) concurrently; rows in CHECKS order."""
    env = env or Environment.from_environ()
    names = [name for name in CHECKS if only is None or name in only]
    return list(await asyncio.gather(*(_run_one(name, CHECKS[name], config, env) for name in names)))


def check_config(path: Path) -> tuple[ShopEdgeConfig | None, Row]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, Row(
            check="config",
            status=Status.FAIL,
            detail="; ".join(exc.problems),
            hint="fix the named key (see config.example.toml) or re-run `shopedge provision`",
        )
    return config, Row(check="config", status=Status.PASS, detail=f"{path} valid")


async def run_doctor(path: Path, env: Environment | None = None) -> tuple[ShopEdgeConfig | None, list[Row]]:
    """The config row, then every other check (skipped when the config cannot be loaded)."""
    config, row = await asyncio.to_thread(check_config, path)
    if config is None:
        return None, [row]
    return config, [row, *await run_checks(config, env)]


def render_table(rows: Sequence[Row]) -> str:
    """Fixed-width rows for a terminal: status, check, detail, then the hint on its own line."""
    marks = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL"}
    width = max((len(row.check) for row in rows), default=5)
    lines = []
    for row in rows:
        lines.append(f"{marks[row.status]}  {row.check:<{width}}  {row.detail}")
        if row.hint and row.status is not Status.PASS:
            lines.append(f"{'':4}  {'':<{width}}  -> {row.hint}")
    return "\n".join(lines)
