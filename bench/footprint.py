"""The daemon's footprint, measured from outside, beside the floor of this design in the same run.

Starts the real daemon (`python -m agent run --config ...`) with the demo's config (web display
driver with its PNG support copy, BLE replay, MQTT to a private Mosquitto, LINE Pay and
Messaging emulators answering at once in their own process), then measures:

- cold start: spawn until `GET /status.json` on the POS port answers 200 (the first start on an
  empty state directory, which creates the schema, and the median of three restarts on it). The
  checkout's packages are byte-compiled first, as `pip install` in deploy/install-pi.sh does
  on the Pi: a shell with PYTHONDONTWRITEBYTECODE set (this machine's) would otherwise compile
  ~100 modules from source at every start of the editable checkout, ~0.35 s no device spends;
- resident memory (VmRSS of the process) idle, after 500 and after 2,000 scan-code sales driven
  by 8 parallel tills (each: one-time key from the emulator, `POST /v1/payments`, long-poll until
  paid), and its growth from 500 to 2,000;
- CPU per sale: utime+stime of the whole process (every thread) from /proc/PID/stat over the
  2,000 sales, divided by them; background work (BLE replay, MQTT, screens) is included;
- POS request -> display: a kiosk client stays connected to the display's `/events` the whole
  run and fetches `/screen.png` on every frame, like kiosk Chromium; 100 sales one at a time
  (each after the screen has been quiet) are timed from the POST (the shopper's one-time key
  already fetched from the emulator) until the first new frame's PNG has arrived;
- no record lost: after SIGTERM, every sale the tills saw paid is `paid` in the journal, and
  reached the broker as a `payment` uplink event (counted by a subscriber on `shopedge/#`).

The floor (bench/_floor_server.py: aiohttp + SQLite WAL synchronous=FULL, one row per sale, the
same SSE/PNG display contract) gets the same figures, and each daemon figure is divided by it.

`--soak`: one hour (`--soak-minutes`) at one sale per second against the daemon, RSS sampled
every minute; reports the samples and the growth from the first to the last (not for CI).

Prints one JSON object. Usage: python bench/footprint.py [--sales 2000] [--soak]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.demo import demo_config_text, start_private_broker

ROOT = Path(__file__).resolve().parents[1]

TILLS = 8
FIRST_MARK = 500
LATENCY_SALES = 100
TICK_S = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return round(int(f.read().split()[1]) * PAGE_KB / 1024, 1)


def memory_split_mb(pid: int) -> dict[str, float]:
    """RSS split as the kernel counts it: anonymous (heap, the daemon's own), file-backed (shared
    libraries, the mmap'ed fonts: every FreeType face maps the font file anew, so the same
    page-cache pages count once per face), and PSS (shared pages divided among their users)."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    pss = next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
    kb = {key: int(status[key].split()[0]) for key in ("RssAnon", "RssFile", "RssShmem")}
    return {
        "anon_mb": round(kb["RssAnon"] / 1024, 1),
        "file_mb": round((kb["RssFile"] + kb["RssShmem"]) / 1024, 1),
        "pss_mb": round(pss / 1024, 1),
    }


def cpu_split_s(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK_S, int(fields[12]) / TICK_S


def cpu_s(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    return sum(cpu_split_s(pid))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Target:
    """One server under test: how to start it and where its POS and display answer."""

    name: str
    spawn: Callable[[], subprocess.Popen[bytes]]
    pos_url: str
    display_url: str
    token: str
    key_url: str | None  # the LINE Pay emulator's one-time-key endpoint (None: no key needed)
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Kiosk:
    """A display client like kiosk Chromium: follows /events and fetches each announced frame."""

    url: str
    frames: list[tuple[int, float]] = field(default_factory=list)  # (version, PNG arrived at)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_event_at: float = 0.0
    version: int = 0  # the newest frame version announced

    async def run(self, http: aiohttp.ClientSession) -> None:
        wanted: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        fetcher = asyncio.create_task(self._fetch(http, wanted))
        try:
            while True:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    async with http.get(self.url + "events", timeout=aiohttp.ClientTimeout(total=None)) as r:
                        async for raw in r.content:
                            line = raw.decode().strip()
                            if line.startswith("data:"):
                                version = int(json.loads(line[5:])["version"])
                                self.last_event_at, self.version = time.monotonic(), version
                                with contextlib.suppress(asyncio.QueueEmpty):
                                    wanted.get_nowait()
                                wanted.put_nowait(version)
                await asyncio.sleep(0.2)
        finally:
            fetcher.cancel()

    async def _fetch(self, http: aiohttp.ClientSession, wanted: asyncio.Queue[int]) -> None:
        while True:
            version = await wanted.get()
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(self.url + "screen.png", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
                    if r.status == 200:
                        self.frames.append((version, time.monotonic()))
                        self.changed.set()


async def wait_status(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> float:
    """Poll GET /status.json every 5 ms until it answers 200; returns monotonic time it did."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before /status.json answered")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(url + "/status.json", timeout=aiohttp.ClientTimeout(total=1)) as r:
                if r.status == 200:
                    await r.read()
                    return time.monotonic()
        await asyncio.sleep(0.005)
    raise RuntimeError("/status.json did not answer within 60 s")


async def start(target: Target, http: aiohttp.ClientSession) -> float:
    began = time.monotonic()
    target.proc = target.spawn()
    return round(await wait_status(http, target.pos_url, target.proc) - began, 3)


async def stop(target: Target) -> int:
    assert target.proc is not None
    target.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(target.proc.wait, 30)
    target.proc = None
    return code


class Till:
    def __init__(self, target: Target, http: aiohttp.ClientSession) -> None:
        self.target, self.http = target, http
        self.headers = {"Authorization": f"Bearer {target.token}"}
        self.posted_at = 0.0  # monotonic time the last sale's POST went out

    async def sale(self, order_id: str, amount: int) -> str:
        """One scan-code sale to the end; returns its final status."""
        body: dict[str, Any] = {
            "order_id": order_id,
            "amount": amount,
            "currency": "TWD",
            "product_name": "bench coffee",
            "method": "scan_code",
        }
        if self.target.key_url is not None:
            async with self.http.post(self.target.key_url) as r:
                body["one_time_key"] = (await r.json())["oneTimeKey"]
        self.posted_at = time.monotonic()  # the shopper's code is in hand: the POS request starts
        async with self.http.post(self.target.pos_url + "/v1/payments", json=body, headers=self.headers) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"POST /v1/payments {order_id}: {r.status} {await r.text()}")
            view = await r.json()
        url = f"{self.target.pos_url}/v1/payments/{order_id}"
        while view["status"] not in ("paid", "failed", "cancelled", "refunded"):
            async with self.http.get(
                url, params={"wait": "2", "version": str(view["version"])}, headers=self.headers
            ) as r:
                view = await r.json()
        return str(view["status"])


async def drive(tills: list[Till], order_ids: list[str], paid: list[str]) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for order_id in order_ids:
        queue.put_nowait(order_id)

    async def worker(till: Till) -> None:
        while not queue.empty():
            order_id = queue.get_nowait()
            if await till.sale(order_id, 100 + len(paid) % 400) == "paid":
                paid.append(order_id)

    await asyncio.gather(*(worker(t) for t in tills))


async def pos_to_display(till: Till, kiosk: Kiosk, prefix: str) -> list[float]:
    latencies: list[float] = []
    for i in range(LATENCY_SALES + 5):  # the first five warm up
        quiet_until = time.monotonic() + 3
        while time.monotonic() - kiosk.last_event_at < 0.3 and time.monotonic() < quiet_until:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        seen = len(kiosk.frames)
        status = await till.sale(f"{prefix}-lat-{i}", 250)
        began = till.posted_at
        while len(kiosk.frames) == seen:
            kiosk.changed.clear()
            await asyncio.wait_for(kiosk.changed.wait(), timeout=5)
        if status != "paid":
            raise RuntimeError(f"latency sale {i} ended {status}")
        if i >= 5:
            latencies.append((kiosk.frames[seen][1] - began) * 1000)
    return latencies


@dataclass
class Uplink:
    """Counts the paid sales that reached the broker as `payment` uplink events."""

    port: int
    paid: set[str] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"footprint-{os.getpid()}") as client:
            await client.subscribe("shopedge/#", qos=1)
            self.ready.set()
            async for message in client.messages:
                payload = json.loads(bytes(message.payload))
                for envelope in payload if isinstance(payload, list) else [payload]:
                    data = envelope.get("data") or {}
                    if envelope.get("kind") == "payment" and data.get("state") == "paid":
                        self.paid.add(str(data.get("order_id")))


async def measure(
    target: Target,
    http: aiohttp.ClientSession,
    sales: int,
    uplink: Uplink | None,
    journal: Callable[[], set[str]],
) -> dict[str, Any]:
    first = await start(target, http)
    await stop(target)
    restarts: list[float] = []
    for _ in range(3):
        if restarts:
            await stop(target)
        restarts.append(await start(target, http))
    assert target.proc is not None
    pid = target.proc.pid
    kiosk = Kiosk(target.display_url)
    kiosk_task = asyncio.create_task(kiosk.run(http))
    await asyncio.sleep(5)
    rss_idle = rss_mb(pid)
    idle_cpu0, idle_t0 = cpu_s(pid), time.monotonic()
    await asyncio.sleep(10)
    idle_cpu_ms_per_s = (cpu_s(pid) - idle_cpu0) * 1000 / (time.monotonic() - idle_t0)
    tills = [Till(target, http) for _ in range(TILLS)]
    paid: list[str] = []
    run_id = f"{target.name}-{int(time.time())}"
    ids = [f"{run_id}-{i}" for i in range(sales)]
    spy = _profiler(pid, PROFILE if target.name == "daemon" else None)
    (user0, sys0), t0, version0 = cpu_split_s(pid), time.monotonic(), kiosk.version
    await drive(tills, ids[:FIRST_MARK], paid)
    rss_500 = rss_mb(pid)
    await drive(tills, ids[FIRST_MARK:], paid)
    elapsed = time.monotonic() - t0
    user1, sys1 = cpu_split_s(pid)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    cpu_per_sale_ms = (user1 - user0 + sys1 - sys0) * 1000 / sales
    frames_per_sale = (kiosk.version - version0) / sales
    rss_2000 = rss_mb(pid)
    split_2000 = memory_split_mb(pid)
    latencies = await pos_to_display(tills[0], kiosk, run_id)
    rss_end = rss_mb(pid)
    if uplink is not None:
        deadline = time.monotonic() + 30
        while not set(paid) <= uplink.paid and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    kiosk_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await kiosk_task
    exit_code = await stop(target)
    journaled = journal()
    lost_journal = sorted(set(paid) - journaled)
    result: dict[str, Any] = {
        "first_start_s": first,
        "cold_start_s": round(statistics.median(restarts), 3),
        "cold_starts_s": restarts,
        "rss_idle_mb": rss_idle,
        "rss_after_500_mb": rss_500,
        "rss_after_2000_mb": rss_2000,
        "rss_growth_500_to_2000_mb": round(rss_2000 - rss_500, 1),
        "memory_after_2000": split_2000,
        "rss_after_latency_phase_mb": rss_end,
        "cpu_per_sale_ms": round(cpu_per_sale_ms, 2),
        "cpu_user_sys_per_sale_ms": [
            round((user1 - user0) * 1000 / sales, 2),
            round((sys1 - sys0) * 1000 / sales, 2),
        ],
        "idle_cpu_ms_per_s": round(idle_cpu_ms_per_s, 2),
        "display_frames_per_sale": round(frames_per_sale, 2),
        "sales": sales,
        "sales_paid": len(paid),
        "sales_per_s": round(sales / elapsed, 1),
        "pos_to_display_ms_p50": round(pct(latencies, 0.5), 2),
        "pos_to_display_ms_p95": round(pct(latencies, 0.95), 2),
        "pos_to_display_ms_max": round(max(latencies), 2),
        "exit_code": exit_code,
        "lost_in_journal": len(lost_journal),
    }
    if uplink is not None:
        result["lost_in_uplink"] = len(set(paid) - uplink.paid)
    return result


PROFILE: Path | None = None


def _profiler(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """`--profile FILE`: py-spy samples the daemon's threads holding the GIL over the sales
    (raw collapsed stacks; the profiler's own CPU is not the daemon's, but it slows it a little:
    a profiled run's figures are not the bench's)."""
    if out is None:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "-p", str(pid), "-o", str(out), "--format", "raw", "-r", "200"]
    return subprocess.Popen([*command, "--threads", "--gil", "--nonblocking"], stdout=subprocess.DEVNULL)


def _journaled_blocking(db: Path, sql: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {str(row[0]) for row in conn.execute(sql)}


def _spawn(args: list[str], log: Path) -> Callable[[], subprocess.Popen[bytes]]:
    def spawn() -> subprocess.Popen[bytes]:
        out = log.open("ab")
        try:
            return subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=out)
        finally:
            out.close()

    return spawn


@contextlib.asynccontextmanager
async def environment(tmp: Path) -> Any:
    """Broker, demo config and emulators; yields (config path, config dict, mqtt port)."""
    broker, mqtt_port = start_private_broker(tmp)
    if broker is None:
        raise SystemExit("mosquitto is needed (deploy/system-deps.sh demo)")
    state = tmp / "state"
    state.mkdir()
    ports = {name: free_port() for name in ("pos", "linepay", "messaging", "display", "relay")}
    ports["mqtt"] = mqtt_port
    config_path = state / "demo.toml"
    config_path.write_text(demo_config_text(state, ports), encoding="utf-8")
    config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    emulators = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is timed)
        [sys.executable, str(ROOT / "bench" / "_emulators.py"), str(config_path)],
        stdout=subprocess.PIPE,
    )
    try:
        assert emulators.stdout is not None
        if (await asyncio.to_thread(emulators.stdout.readline)).strip() != b"ready":
            raise RuntimeError("the emulators did not start")
        yield config_path, config, mqtt_port
    finally:
        emulators.terminate()
        emulators.wait(10)
        broker.terminate()
        broker.wait(10)


def daemon_target(tmp: Path, config_path: Path, config: dict[str, Any]) -> Target:
    return Target(
        name="daemon",
        spawn=_spawn(
            [sys.executable, "-m", "agent", "run", "--config", str(config_path)], tmp / "daemon.log"
        ),
        pos_url=f"http://{config['pos']['listen']}",
        display_url=f"http://{config['display']['listen']}/",
        token=config["pos"]["token"],
        key_url=f"{config['linepay']['api_base']}/_emulator/keys",
    )


async def footprint(sales: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="footprint-") as name:
        tmp = Path(name)
        async with (
            environment(tmp) as (config_path, config, mqtt_port),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http,
        ):
            uplink = Uplink(mqtt_port)
            uplink_task = asyncio.create_task(uplink.run())
            await asyncio.wait_for(uplink.ready.wait(), 10)
            daemon = daemon_target(tmp, config_path, config)
            db = Path(config["storage"]["state_dir"]) / "shopedge.db"
            daemon_result = await measure(
                daemon,
                http,
                sales,
                uplink,
                lambda: _journaled_blocking(db, "SELECT order_id FROM payments WHERE state = 'paid'"),
            )
            uplink_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await uplink_task
            floor_port, floor_db = free_port(), tmp / "floor.db"
            floor = Target(
                name="floor",
                spawn=_spawn(
                    [
                        sys.executable,
                        str(ROOT / "bench" / "_floor_server.py"),
                        "--port",
                        str(floor_port),
                        "--db",
                        str(floor_db),
                        "--token",
                        "floor-token",
                    ],
                    tmp / "floor.log",
                ),
                pos_url=f"http://127.0.0.1:{floor_port}",
                display_url=f"http://127.0.0.1:{floor_port}/",
                token="floor-token",
                key_url=None,
            )
            floor_result = await measure(
                floor, http, sales, None, lambda: _journaled_blocking(floor_db, "SELECT order_id FROM sales")
            )
    ratio_keys = [
        "cold_start_s",
        "rss_idle_mb",
        "rss_after_2000_mb",
        "cpu_per_sale_ms",
        "pos_to_display_ms_p95",
    ]
    goals = {
        "cold_start_s<=1.0": daemon_result["cold_start_s"] <= 1.0,
        "rss_after_2000_mb<=80": daemon_result["rss_after_2000_mb"] <= 80,
        "rss_growth_500_to_2000_mb<=4": daemon_result["rss_growth_500_to_2000_mb"] <= 4,
        "cpu_per_sale_ms<=10": daemon_result["cpu_per_sale_ms"] <= 10,
        "pos_to_display_ms_p95<20": daemon_result["pos_to_display_ms_p95"] < 20,
        "no_record_lost": daemon_result["lost_in_journal"] == 0 and daemon_result["lost_in_uplink"] == 0,
    }
    return {
        "bench": "footprint",
        "daemon": daemon_result,
        "floor": floor_result,
        "ratio_to_floor": {
            k: round(daemon_result[k] / floor_result[k], 2) for k in ratio_keys if floor_result[k]
        },
        "goals_met": goals,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "config": "agent.demo config: display web + PNG support copy, ble replay x20, private mosquitto",
        "tills": TILLS,
    }


async def soak(minutes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="footprint-soak-") as name:
        tmp = Path(name)
        async with environment(tmp) as (config_path, config, _), aiohttp.ClientSession() as http:
            daemon = daemon_target(tmp, config_path, config)
            await start(daemon, http)
            assert daemon.proc is not None
            pid, till = daemon.proc.pid, Till(daemon, http)
            kiosk = Kiosk(daemon.display_url)
            kiosk_task = asyncio.create_task(kiosk.run(http))
            samples = [{"minute": 0, "rss_mb": rss_mb(pid), "sales": 0}]
            began, sold = time.monotonic(), 0
            while sold < minutes * 60:
                # amounts vary like a till's, so the screens' text caches see new text all hour
                await till.sale(f"soak-{int(began)}-{sold}", 100 + sold % 400)
                sold += 1
                if sold % 60 == 0:
                    samples.append({"minute": sold // 60, "rss_mb": rss_mb(pid), "sales": sold})
                await asyncio.sleep(max(0.0, began + sold - time.monotonic()))
            cpu = cpu_s(pid)
            kiosk_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kiosk_task
            code = await stop(daemon)
    rss = [s["rss_mb"] for s in samples[1:]] or [samples[0]["rss_mb"]]
    return {
        "bench": "footprint-soak",
        "minutes": minutes,
        "sales": sold,
        "rss_samples": samples,
        "rss_growth_first_to_last_minute_mb": round(rss[-1] - rss[0], 1),
        "rss_max_mb": max(rss),
        "cpu_s_total": round(cpu, 2),
        "exit_code": code,
    }


PACKAGES = ("agent", "base", "cloud", "drivers", "membership", "offline_queue", "pos_bridge")


def byte_compile() -> None:
    """The project's modules compiled to `__pycache__`, as pip does when it installs the agent."""
    for package in PACKAGES:
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise SystemExit(f"byte-compiling {package} failed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sales", type=int, default=2000)
    parser.add_argument("--soak", action="store_true", help="one sale per second, RSS every minute")
    parser.add_argument("--soak-minutes", type=int, default=60)
    parser.add_argument(
        "--profile", type=Path, help="py-spy (pip install py-spy) the daemon over the sales into FILE"
    )
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    byte_compile()
    result: Awaitable[dict[str, Any]] = soak(args.soak_minutes) if args.soak else footprint(args.sales)
    print(json.dumps(asyncio.run(result)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
