"""Power cuts under LazyFS: what the POS API or `Outbox.put()` acknowledged survives losing every
unsynced write, and the database passes `PRAGMA integrity_check`.

SIGKILL alone keeps the page cache, so it cannot show a missing fsync. Here the writer's state
directory is a `LazyMount` (see lazyfs.py): a cut SIGKILLs the writer, then throws away every
write that was not fsynced, remounts and reads back. Nothing reads the database between the kill
and the cut: a reader's checkpoint would fsync the writer's pages and hide a missing sync.

The same writers run with `synchronous=OFF` forced onto their connections (writer.py) to show
that the harness catches acknowledged writes that never reached the disk.

SHOPEDGE_POWERCUT_OUTBOX (default 16) and SHOPEDGE_POWERCUT_PAYMENTS (default 14) set the cuts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.db import migrate, open_engine
from emulators.linepay import ThreadedEmulator
from tests.integration.payments.conftest import CHANNEL_ID, CHANNEL_SECRET
from tests.integration.payments.test_sigkill import Lane, _catch, _check_invariants, _inject_faults
from tests.integration.powercut.lazyfs import LazyMount, fuse_unavailable

ROOT = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("writer.py")
OUTBOX_CUTS = int(os.environ.get("SHOPEDGE_POWERCUT_OUTBOX", "16"))
PAYMENT_CUTS = int(os.environ.get("SHOPEDGE_POWERCUT_PAYMENTS", "14"))

_why_not = fuse_unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_why_not is not None, reason=f"LazyFS needs FUSE: {_why_not}"),
]


def _env(synchronous: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SHOPEDGE_POWERCUT_SYNCHRONOUS", None)
    if synchronous is not None:
        env["SHOPEDGE_POWERCUT_SYNCHRONOUS"] = synchronous
    return env


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# ---------------------------------------------------------------- the filesystem itself


def test_a_cut_keeps_what_was_fsynced_and_drops_the_rest(tmp_path: Path) -> None:
    with LazyMount(tmp_path / "disk", tmp_path / "mnt") as mount:
        synced, unsynced = mount.mountpoint / "synced", mount.mountpoint / "unsynced"
        with synced.open("wb") as f:
            f.write(b"on disk")
            f.flush()
            os.fsync(f.fileno())
            f.write(b" and in the page cache only")
        unsynced.write_bytes(b"never synced")
        assert synced.read_bytes() == b"on disk and in the page cache only"
        mount.cut()
        assert synced.read_bytes() == b"on disk"
        assert unsynced.read_bytes() == b""  # the name was journaled, the data was not
        with synced.open("r+b") as f:
            f.truncate(2)
            os.fdatasync(f.fileno())
        mount.cut()
        assert synced.read_bytes() == b"on"


# ---------------------------------------------------------------- outbox puts


def _put_until_killed(db: Path, tag: str, rng: random.Random, env: dict[str, str]) -> dict[int, str]:
    """Run the outbox crash child on the mount, SIGKILL it mid-puts; the puts it saw return."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), "outbox", str(db), tag],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == "ready\n", first + (proc.stderr.read() if proc.stderr else "")
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, err
    acked: dict[int, str] = {}
    for line in out.split("\n")[:-1]:  # the last piece may be a line cut by the kill
        rid, seq = line.split(" ")
        acked[int(rid)] = seq
    return acked


def _outbox_cuts(tmp_path: Path, cuts: int, env: dict[str, str], seed: int) -> tuple[int, list[str]]:
    """`cuts` power cuts during outbox puts; returns the puts acknowledged and what went wrong."""
    rng = random.Random(seed)
    acked: dict[int, str] = {}
    problems: list[str] = []
    with LazyMount(tmp_path / "disk", tmp_path / "mnt") as mount:
        db = mount.mountpoint / "shopedge.db"
        engine = open_engine(db)
        migrate(engine)
        engine.dispose()
        for i in range(cuts):
            got = _put_until_killed(db, f"c{i}", rng, env)
            acked.update(got)
            mount.cut()
            check = _integrity(db)
            if check != "ok":
                problems.append(f"cut {i}: integrity_check: {check}")
                break
            conn = sqlite3.connect(db)
            try:
                stored = {
                    rid: json.loads(payload)["seq"]
                    for rid, payload in conn.execute("SELECT id, payload FROM outbox WHERE stream = 'crit'")
                }
            finally:
                conn.close()
            lost = {rid: seq for rid, seq in acked.items() if stored.get(rid) != seq}
            if lost:
                problems.append(
                    f"cut {i}: {len(lost)} acknowledged puts lost, e.g. {sorted(lost.items())[:3]}"
                )
                break
    return len(acked), problems


def test_power_cuts_during_outbox_puts_lose_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHOPEDGE_POWERCUT_SEED", str(random.randrange(10**6))))
    print(f"power-cut seed {seed}")
    acked, problems = _outbox_cuts(tmp_path, OUTBOX_CUTS, _env(None), seed)
    assert not problems, problems
    assert acked >= OUTBOX_CUTS * 5, f"only {acked} puts acknowledged over {OUTBOX_CUTS} cuts"


def test_harness_catches_outbox_with_synchronous_off(tmp_path: Path) -> None:
    acked, problems = _outbox_cuts(tmp_path, 3, _env("OFF"), seed=1)
    assert acked > 0
    assert problems, "synchronous=OFF lost nothing under LazyFS: the harness does not see missing fsyncs"
    print(f"synchronous=OFF caught: {problems[0]}")


# ---------------------------------------------------------------- payments over the POS API


class Zygote:
    """writer.py's fork server: agents started from one process that has imported the daemon."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), "zygote"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, *words: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer, "the agent fork server died"
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class ForkedAgent:
    """One `shopedge run` forked by the zygote; the subset of Popen that Lane uses."""

    def __init__(self, zygote: Zygote, config: Path, log: Path) -> None:
        self.zygote = zygote
        self.pid = int(zygote.ask("run", str(config), str(log)))
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def poll(self) -> int | None:
        if self.returncode is None:
            answer = self.zygote.ask("poll", str(self.pid))
            self.returncode = None if answer == "-" else int(answer)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"agent {self.pid}", timeout)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode


class PowerLane(Lane):
    """A sigkill-test lane whose state directory is on a LazyMount, cut after every kill."""

    mount: LazyMount
    zygote: Zygote
    acked: dict[str, dict[str, Any]]  # latest payment view the API answered, by attempt order id
    problems: list[str]

    def attach(self, mount: LazyMount, zygote: Zygote) -> None:
        self.mount, self.zygote, self.acked, self.problems = mount, zygote, {}, []
        (mount.mountpoint / "state").mkdir(exist_ok=True)
        (self.root / "state").symlink_to(mount.mountpoint / "state")

    def start(self) -> Any:
        return ForkedAgent(self.zygote, self.root / "config.toml", self.root / "agent.log")

    def call(self, method: str, path: str, **kw: Any) -> Any:
        response = super().call(method, path, **kw)
        if response is not None and response.status_code in (200, 201):
            view = response.json()
            if isinstance(view, dict) and "attempt_order_id" in view:
                seen = self.acked.get(view["attempt_order_id"])
                if seen is None or view["version"] >= seen["version"]:
                    self.acked[view["attempt_order_id"]] = view
        return response

    def round(self) -> None:
        """Start, act, SIGKILL at a random point, cut the power, check what was acknowledged."""
        proc = self.start()
        try:
            if self.rng.random() < 0.15:  # the cut lands during startup / reconciliation
                time.sleep(self.rng.uniform(1.0, 3.0))
            else:
                self.wait_ready(proc)
                if self.rng.random() < 0.8:
                    self.new_order()
                self.act()
                time.sleep(self.rng.uniform(0.0, 0.6))
                self.act()
                time.sleep(self.rng.uniform(0.0, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            self.kills += 1
        self.mount.cut()
        self.problems += self.lost()

    def lost(self) -> list[str]:
        """What the API acknowledged and the journal no longer has, after the cut."""
        db = self.root / "state" / "shopedge.db"
        if not self.acked:
            return []
        try:
            check = _integrity(db)
            rows = {row["line_order_id"]: row for row in self.journal()}
        except sqlite3.Error as exc:
            return [f"lane {self.index}: journal unreadable after the cut: {exc}"]
        if check != "ok":
            return [f"lane {self.index}: integrity_check: {check}"]
        problems = []
        for attempt, view in self.acked.items():
            row = rows.get(attempt)
            if row is None:
                problems.append(f"lane {self.index}: acknowledged payment {attempt} ({view['status']}) lost")
            elif row["version"] < view["version"] or row["refunded_amount"] < view["refunded_amount"]:
                problems.append(
                    f"lane {self.index}: {attempt} acknowledged v{view['version']} {view['status']} "
                    f"refunded {view['refunded_amount']}, journal has v{row['version']} {row['state']} "
                    f"refunded {row['refunded_amount']}"
                )
            elif view["status"] == "paid" and row["state"] not in ("paid", "refunded"):
                problems.append(f"lane {self.index}: {attempt} acknowledged paid, journal {row['state']}")
        return problems


def _payment_cuts(
    tmp_path: Path, cuts: int, env: dict[str, str], seed: int, *, settle: bool, lane_count: int = 2
) -> list[PowerLane]:
    """`cuts` power cuts across the lanes; then (`settle`) a run without faults until every payment
    is final, and the money invariants against the emulator's ledger, while the mounts are up."""
    rng = random.Random(seed)
    emulator = ThreadedEmulator(channel_id=CHANNEL_ID, channel_secret=CHANNEL_SECRET).start()
    lanes: list[PowerLane] = []
    mounts: list[LazyMount] = []
    zygotes: list[Zygote] = []
    try:
        for i in range(lane_count):
            root = tmp_path / f"lane{i}"
            root.mkdir()
            mount = LazyMount(tmp_path / f"disk{i}", tmp_path / f"mnt{i}")
            mount.mount()
            mounts.append(mount)
            lane = PowerLane(index=i, root=root, emulator=emulator, rng=random.Random(rng.random()))
            zygotes.append(Zygote(env))
            lane.attach(mount, zygotes[-1])
            engine = open_engine(root / "state" / "shopedge.db")  # installed earlier, durably
            migrate(engine)
            engine.dispose()
            lane.write_config()
            lanes.append(lane)
        per_lane = -(-cuts // lane_count)
        errors: list[BaseException] = []
        fault_lock = threading.Lock()

        def run(lane: PowerLane) -> None:
            try:
                for _ in range(per_lane):
                    with fault_lock:
                        if lane.rng.random() < 0.8:
                            _inject_faults(emulator, lane.rng)
                    lane.round()
                    if lane.problems:
                        return
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        if not settle or any(lane.problems for lane in lanes):
            return lanes
        emulator.sync(lambda s: s.faults.clear())
        deadline = time.monotonic() + 90
        threads = [threading.Thread(target=_catch, args=(errors, lane.settle, deadline)) for lane in lanes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        _check_invariants(list(lanes), emulator.sync(lambda s: json.loads(json.dumps(s.snapshot()))))
        return lanes
    finally:
        emulator.stop()
        for zygote in zygotes:
            zygote.close()
        for mount in mounts:
            mount.unmount()


def test_power_cuts_during_payments_lose_nothing_the_pos_api_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHOPEDGE_POWERCUT_SEED", str(random.randrange(10**6))))
    print(f"power-cut seed {seed}")
    lanes = _payment_cuts(tmp_path, PAYMENT_CUTS, _env(None), seed, settle=True)
    problems = [p for lane in lanes for p in lane.problems]
    assert not problems, problems
    assert sum(lane.mount.cuts for lane in lanes) >= PAYMENT_CUTS
    assert sum(len(lane.acked) for lane in lanes) > 0


def test_harness_catches_payments_with_synchronous_off(tmp_path: Path) -> None:
    lanes = _payment_cuts(tmp_path, 3, _env("OFF"), seed=2, settle=False, lane_count=1)
    problems = [p for lane in lanes for p in lane.problems]
    assert problems, "synchronous=OFF lost no acknowledged payment: the harness does not see missing fsyncs"
    print(f"synchronous=OFF caught: {problems[0]}")
