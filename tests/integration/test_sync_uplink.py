"""The uplink shell on a real state DB against a scripted connection: acks only after PUBACK,
holds across drops, window, batching, refused publishes. No broker: the test resolves the PUBACKs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agent.db import migrate, open_state_db
from agent.sync import decode_message
from agent.sync._client import PublishRefused, SyncConnectionError
from agent.sync._store import last_seqs_blocking
from agent.sync._uplink import Uplink, UplinkSettings, device_namespace, event_id, plan_messages
from base.statedb import StateDB
from tests.unit.sync.asyncapi import validate_message
from tests.unit.sync.memory_outbox import MemoryOutbox


class ScriptedClient:
    """Records publishes; the test decides when each PUBACK comes and with which outcome."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self.changed = asyncio.Event()

    def publish_qos1(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, payload, future))
        self.changed.set()
        return future

    def pending(self) -> list[asyncio.Future[None]]:
        return [f for _t, _p, f in self.sent if not f.done()]

    async def wait_sent(self, count: int) -> None:
        while len(self.sent) < count:
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    db = open_state_db(tmp_path / "s.db")
    migrate(db)
    yield db
    db.close()


def uplink(outbox: MemoryOutbox, db: StateDB, **kw: Any) -> Uplink:
    settings = UplinkSettings(store_id="s1", device_id="d1", streams=("payment", "sale"), **kw)
    return Uplink(outbox, db, settings, wall_clock=lambda: 1000.0)  # type: ignore[arg-type]


async def settle_all(futures: list[asyncio.Future[None]], exc: BaseException | None = None) -> None:
    for future in futures:
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
    for _ in range(5):
        await asyncio.sleep(0)


async def drained(outbox: MemoryOutbox) -> None:
    """Wait (2 s at most) until every record is acked: acks also wait for seq rows to be stored."""
    for _ in range(400):
        if not outbox.rows:
            return
        await asyncio.sleep(0.005)
    assert outbox.rows == {}


def envelopes(client: ScriptedClient) -> list[dict[str, Any]]:
    return [e.to_json() for _t, p, _f in client.sent for e in decode_message(p)]


async def test_nothing_is_acked_before_its_puback_and_window_is_bounded(db: StateDB) -> None:
    outbox = MemoryOutbox()
    for i in range(30):
        await outbox.put("sale", {"i": i})
    up = uplink(outbox, db, max_inflight=4, batch_max=1)
    client = ScriptedClient()
    task = asyncio.create_task(up.run(client))  # type: ignore[arg-type]
    await client.wait_sent(4)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(client.sent) == 4, "the window holds back the 5th publish"
    assert not [c for c in outbox.calls if c[0] == "ack"]
    await settle_all(client.pending()[:2])
    await client.wait_sent(6)

    def acked() -> list[int]:
        return [i for name, ids in outbox.calls if name == "ack" for i in ids]

    # Acks are grouped for up to ACK_COALESCE_S before one outbox transaction takes them.
    for _ in range(200):
        if acked():
            break
        await asyncio.sleep(0.005)
    assert acked() == [1, 2]
    while len(client.sent) < 30 or client.pending():
        await settle_all(client.pending())
        await asyncio.sleep(0)
    await drained(outbox)
    assert [e["seq"] for e in envelopes(client)] == list(range(1, 31))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_dropped_connection_resends_the_held_batch_first_with_same_ids(db: StateDB) -> None:
    outbox = MemoryOutbox()
    for i in range(6):
        await outbox.put("payment", {"i": i})
    up = uplink(outbox, db, max_inflight=10, batch_max=1)
    first = ScriptedClient()
    task = asyncio.create_task(up.run(first))  # type: ignore[arg-type]
    await first.wait_sent(6)
    await settle_all(first.pending()[:2])  # two PUBACKs, then the link drops
    await settle_all(first.pending(), SyncConnectionError("gone"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(outbox.rows) == [3, 4, 5, 6]
    assert not [c for c in outbox.calls if c[0] == "release"], "held, not released: attempts are kept"
    await outbox.put("payment", {"i": 6})
    second = ScriptedClient()
    task = asyncio.create_task(up.run(second))  # type: ignore[arg-type]
    await second.wait_sent(4)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(second.sent) == 4, "the new record waits until the held batch is acknowledged"
    old = {e["seq"]: e["id"] for e in envelopes(first)}
    resent = envelopes(second)
    assert [e["seq"] for e in resent] == [3, 4, 5, 6]
    assert all(old[e["seq"]] == e["id"] for e in resent)
    await settle_all(second.pending())
    await second.wait_sent(5)
    assert envelopes(second)[-1]["seq"] == 7
    await settle_all(second.pending())
    await drained(outbox)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_backlog_is_batched_and_shutdown_releases_held_records(db: StateDB) -> None:
    outbox = MemoryOutbox()
    for i in range(25):
        await outbox.put("sale", {"i": i})
    up = uplink(outbox, db, max_inflight=10, batch_max=10)
    client = ScriptedClient()
    task = asyncio.create_task(up.run(client))  # type: ignore[arg-type]
    await client.wait_sent(3)
    assert [len(decode_message(p)) for _t, p, _f in client.sent] == [10, 10, 5]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await up.release_all()
    releases = [c[1] for c in outbox.calls if c[0] == "release"]
    assert [r[0] for r in releases] == list(range(1, 26))
    assert all(r[2] == 1000.0 for r in releases), "retryable at once on the next start"


async def test_a_refused_publish_goes_back_with_a_delay(db: StateDB) -> None:
    outbox = MemoryOutbox()
    await outbox.put("sale", {"i": 1})
    up = uplink(outbox, db)
    client = ScriptedClient()
    task = asyncio.create_task(up.run(client))  # type: ignore[arg-type]
    await client.wait_sent(1)
    await settle_all(client.pending(), PublishRefused(0x87, "Not authorized"))
    releases = [c[1] for c in outbox.calls if c[0] == "release"]
    assert releases == [(1, "sync: broker refused the publish: Not authorized (0x87)", 1030.0)]
    assert up.stats.refused == 1 and 1 in outbox.rows
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_event_ids_are_stable_per_record_and_differ_between_devices() -> None:
    class R:
        id = 7
        stream = "sale"
        payload: ClassVar[dict[str, Any]] = {}
        created_at = 1.5

    ns = device_namespace("s", "d")
    assert event_id(ns, R()) == event_id(ns, R())
    assert event_id(ns, R()) != event_id(device_namespace("s", "e"), R())
    uuid.UUID(event_id(ns, R()))


def test_plan_messages_groups_in_order_and_matches_the_schema() -> None:
    class R:
        def __init__(self, i: int) -> None:
            self.id, self.stream, self.payload, self.created_at = i, "sale", {"i": i, "名": "茶"}, 1.7e9 + i

    records = [R(i) for i in range(1, 8)]
    plan = list(
        plan_messages(records, {i: i + 100 for i in range(1, 8)}, namespace=uuid.uuid4(), batch_max=3)
    )  # type: ignore[arg-type]
    assert [ids for ids, _p in plan] == [[1, 2, 3], [4, 5, 6], [7]]
    for _ids, payload in plan:
        validate_message(payload)
    decoded = [e for _ids, payload in plan for e in decode_message(payload)]
    assert [e.seq for e in decoded] == list(range(101, 108))
    assert [e.data["i"] for e in decoded] == list(range(1, 8))
    with pytest.raises(ValueError, match="batch_max"):
        list(plan_messages(records, {}, namespace=uuid.uuid4(), batch_max=0))  # type: ignore[arg-type]


async def test_held_records_whose_numbering_was_interrupted_get_their_seq(db: StateDB) -> None:
    outbox = MemoryOutbox()
    for i in range(3):
        await outbox.put("sale", {"i": i})
    up = uplink(outbox, db)
    # The link dropped after the claim and before the seqs were stored in memory.
    claimed = await outbox.claim("sale", limit=10)
    up._held["sale"] = {r.id: r for r in claimed}  # type: ignore[misc]
    client = ScriptedClient()
    task = asyncio.create_task(up.run(client))  # type: ignore[arg-type]
    await client.wait_sent(1)
    assert [e["seq"] for e in envelopes(client)] == [1, 2, 3]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_seqs_numbered_in_memory_are_stored_and_continue_after_a_restart(db: StateDB) -> None:
    outbox = MemoryOutbox()
    up = uplink(outbox, db, batch_max=1)
    client = ScriptedClient()
    task = asyncio.create_task(up.run(client))  # type: ignore[arg-type]
    for round_ in range(3):  # three claims: the first asks the store, the others number in memory
        for i in range(2):
            await outbox.put("sale", {"round": round_, "i": i})
        await client.wait_sent(2 * (round_ + 1))
        await settle_all(client.pending())
        await drained(outbox)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e["seq"] for e in envelopes(client)] == [1, 2, 3, 4, 5, 6]
    assert last_seqs_blocking(db) == {"sale": 6}
    # A new process (a new Uplink on the same DB) continues the count.
    await outbox.put("sale", {"after": "restart"})
    again = uplink(outbox, db)
    client2 = ScriptedClient()
    task = asyncio.create_task(again.run(client2))  # type: ignore[arg-type]
    await client2.wait_sent(1)
    assert [e["seq"] for e in envelopes(client2)] == [7]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
