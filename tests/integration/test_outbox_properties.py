"""Property tests: random put/claim/ack/release/expire sequences on a real SQLite outbox,
checked step by step against a small in-memory model of the contract.

The model states the contract plainly: streams are FIFO by id; a claim stops at a record in
flight or waiting for its retry; expired telemetry is skipped and dropped; a record whose lease
ran out `MAX_ATTEMPTS` times, or that is released after its last attempt or permanently, is a
dead letter; a dedupe key returns the first id; nothing else ever disappears.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.db import migrate, open_engine
from offline_queue import Durability, Outbox

MAX_ATTEMPTS = 3
STREAMS = ("payment", "presence")
T0 = 1_000_000.0


@dataclass
class Put:
    stream: str
    telemetry: bool
    key: str | None
    expires_in: int | None


@dataclass
class Claim:
    stream: str
    limit: int
    lease: int


@dataclass
class Ack:
    picks: list[int]


@dataclass
class Release:
    pick: int
    retry_in: int
    permanent: bool


@dataclass
class Advance:
    seconds: float


Op = Put | Claim | Ack | Release | Advance

ops_strategy = st.lists(
    st.one_of(
        st.builds(
            Put,
            stream=st.sampled_from(STREAMS),
            telemetry=st.booleans(),
            key=st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])),
            expires_in=st.one_of(st.none(), st.integers(0, 8)),
        ),
        st.builds(
            Put, stream=st.just("payment"), telemetry=st.just(False), key=st.none(), expires_in=st.none()
        ),
        st.builds(Claim, stream=st.sampled_from(STREAMS), limit=st.integers(1, 4), lease=st.integers(1, 5)),
        st.builds(Ack, picks=st.lists(st.integers(0, 50), max_size=3)),
        st.builds(Release, pick=st.integers(0, 50), retry_in=st.integers(0, 4), permanent=st.booleans()),
        st.builds(Claim, stream=st.just("payment"), limit=st.integers(1, 4), lease=st.integers(1, 5)),
        st.builds(Advance, seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0])),
    ),
    min_size=4,
    max_size=50,
)


@dataclass
class MRec:
    id: int
    stream: str
    payload: dict[str, int]
    durability: Durability
    expires_at: float | None
    attempts: int = 0
    not_before: float = 0.0
    lease_until: float | None = None


@dataclass
class Model:
    live: dict[int, MRec] = field(default_factory=dict)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    dead: dict[int, str] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    expired: set[int] = field(default_factory=set)
    ids: list[int] = field(default_factory=list)

    def claim(self, stream: str, limit: int, lease: float, now: float) -> list[MRec]:
        out: list[MRec] = []
        for rec in sorted((r for r in self.live.values() if r.stream == stream), key=lambda r: r.id):
            if rec.lease_until is not None and rec.lease_until > now:
                break
            if rec.expires_at is not None and rec.expires_at <= now:
                del self.live[rec.id]
                self.expired.add(rec.id)
                continue
            if rec.not_before > now:
                break
            if rec.lease_until is not None and rec.attempts >= MAX_ATTEMPTS:
                del self.live[rec.id]
                self.dead[rec.id] = "lease expired"
                continue
            out.append(rec)
            if len(out) == limit:
                break
        for rec in out:
            rec.attempts += 1
            rec.lease_until = now + lease
        return out


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "shopedge.db"
    engine = open_engine(path)
    migrate(engine)
    engine.dispose()
    return path


async def _play(db: Path, ops: list[Op]) -> None:
    clock = Clock()
    model = Model()
    counter = 0
    async with await Outbox.open(db, max_attempts=MAX_ATTEMPTS, clock=clock) as box:
        for op in ops:
            now = clock.now
            if isinstance(op, Put):
                counter += 1
                durability = Durability.TELEMETRY if op.telemetry else Durability.CRITICAL
                expires_at = now + op.expires_in if (op.telemetry and op.expires_in is not None) else None
                payload = {"n": counter}
                rid = await box.put(
                    op.stream, payload, durability=durability, dedupe_key=op.key, expires_at=expires_at
                )
                if op.key is not None and (op.stream, op.key) in model.keys:
                    assert rid == model.keys[(op.stream, op.key)], "dedupe key must return the first id"
                    continue
                assert not model.ids or rid > max(model.ids), "ids must grow"
                model.ids.append(rid)
                if op.key is not None:
                    model.keys[(op.stream, op.key)] = rid
                model.live[rid] = MRec(
                    id=rid, stream=op.stream, payload=payload, durability=durability, expires_at=expires_at
                )
            elif isinstance(op, Claim):
                got = await box.claim(op.stream, limit=op.limit, lease=op.lease)
                want = model.claim(op.stream, op.limit, op.lease, now)
                assert [(r.id, r.attempts, r.payload, r.durability) for r in got] == [
                    (m.id, m.attempts, m.payload, m.durability) for m in want
                ]
            elif isinstance(op, Ack):
                ids = [model.ids[p % len(model.ids)] for p in op.picks] if model.ids else []
                await box.ack(ids)
                for rid in ids:
                    if model.live.pop(rid, None) is not None:
                        model.acked.add(rid)
            elif isinstance(op, Release):
                if not model.ids:
                    continue
                rid = model.ids[op.pick % len(model.ids)]
                await box.release(rid, "boom", retry_at=now + op.retry_in, permanent=op.permanent)
                rec = model.live.get(rid)
                if rec is not None:
                    if op.permanent or rec.attempts >= MAX_ATTEMPTS:
                        del model.live[rid]
                        model.dead[rid] = "released"
                    else:
                        rec.lease_until = None
                        rec.not_before = now + op.retry_in
            else:
                clock.now += op.seconds
            for stream in STREAMS:
                assert await box.depth(stream) == sum(1 for r in model.live.values() if r.stream == stream)
        assert {d.id for d in await box.dead_letters(limit=1000)} == set(model.dead)
        # No loss: every id ever returned is live, acked, dead, or (telemetry only) expired.
        for rid in model.ids:
            assert (rid in model.live) + (rid in model.acked) + (rid in model.dead) + (
                rid in model.expired
            ) == 1
        for rid in model.expired:
            assert rid not in model.live
        # Drain: far in the future every live record comes out, per stream in id order.
        clock.now += 10_000
        for stream in STREAMS:
            drained = [r.id for r in await box.claim(stream, limit=1000)]
            want = [m.id for m in model.claim(stream, 1000, 1, clock.now)]
            assert drained == want == sorted(drained)


P = "payment"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_strategy)
# Hand-picked sequences that must always run: a retry blocks its stream; a live lease blocks it;
# expired telemetry is skipped; a lease that runs out MAX_ATTEMPTS times dead-letters the record.
@example(ops=[Put(P, False, None, None), Put(P, False, None, None), Release(0, 3, False), Claim(P, 4, 1)])
@example(ops=[Put(P, False, None, None), Claim(P, 1, 5), Put(P, False, None, None), Claim(P, 4, 1)])
@example(ops=[Put(P, True, None, 1), Put(P, True, None, 9), Advance(2.0), Claim(P, 4, 1)])
@example(
    ops=[Put(P, False, None, None), Put(P, False, "k1", None), Put(P, False, "k1", None)]
    + [Claim(P, 1, 1), Advance(1.0)] * MAX_ATTEMPTS
    + [Claim(P, 4, 1)]
)
def test_outbox_matches_model(ops: list[Op], template: Path, tmp_path: Path) -> None:
    db = tmp_path / "prop.db"
    db.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, db)
    asyncio.run(_play(db, ops))
