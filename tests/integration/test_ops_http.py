"""`/status`, `/status.json` and `/metrics` served by a real aiohttp server on 127.0.0.1, read
back with an HTTP client; the metrics are parsed by Prometheus's own text parser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.config import parse_config
from agent.context import AgentContext
from agent.db import open_state_db
from agent.ops_http import add_ops_routes, ops_facts
from base.health import Level

NOW = 1_800_000_000.0


class CountingOutbox:
    """Only what the status page reads from the outbox contract: `depth(stream)`."""

    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths

    async def depth(self, stream: str | None = None) -> int:
        return self.depths.get(stream, 0) if stream else sum(self.depths.values())


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AgentContext]:
    config = parse_config(
        {
            "device": {"store_id": "store-1", "device_id": "counter-1", "name": 'Front <till> "A"'},
            "ble": {"store_beacon_hwids": ["0123456789", "abcdefabcd"], "beacon_silent_after_s": 300},
        },
        environ={},
    )
    context = AgentContext(config=config, db=open_state_db(tmp_path / "s.db"), wall_clock=lambda: NOW)
    context.health.set("pos", Level.GREEN, "listening on 127.0.0.1:8737")
    context.health.set("mqtt", Level.AMBER, 'broker "down" <retrying>')
    yield context
    context.db.close()


@pytest.fixture
async def client(ctx: AgentContext) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_ops_routes(app, ctx)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_status_page(client: TestClient[web.Request, web.Application], ctx: AgentContext) -> None:
    facts = ops_facts(ctx)
    facts.record_payment(at=NOW - 30, amount_twd=350, result="paid")
    facts.record_beacon("0123456789", at=NOW - 10)
    ctx.services["outbox"] = CountingOutbox({"payment": 2, "sale": 5})
    response = await client.get("/status")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "store-1/counter-1: amber" in page and "Front &lt;till&gt; &quot;A&quot;" in page
    assert "broker &quot;down&quot; &lt;retrying&gt;" in page and "<retrying>" not in page
    assert "<td>payment</td><td>2</td>" in page and "<td>sale</td><td>5</td>" in page
    assert "30 s ago: NT$350 paid" in page
    assert '<tr class="green"><td>0123456789</td><td>heard</td><td>10 s ago</td></tr>' in page
    assert '<tr class="red"><td>abcdefabcd</td><td>silent</td><td>never</td></tr>' in page
    assert "Last sync</h2><p>never" in page


async def test_status_without_outbox_or_payments(client: TestClient[web.Request, web.Application]) -> None:
    page = await (await client.get("/status")).text()
    assert "outbox not open" in page and "none since start" in page


async def test_status_json(client: TestClient[web.Request, web.Application], ctx: AgentContext) -> None:
    ops_facts(ctx).record_sync(at=NOW - 5)
    body = await (await client.get("/status.json")).json()
    assert body["overall"] == "amber"
    assert [c["name"] for c in body["components"]] == ["mqtt", "pos"]
    assert body["last_sync_at"] == NOW - 5
    assert body["beacons"] == [
        {"hwid": "0123456789", "last_heard": None, "silent": True},
        {"hwid": "abcdefabcd", "last_heard": None, "silent": True},
    ]


async def test_metrics_parse_as_prometheus_text(
    client: TestClient[web.Request, web.Application], ctx: AgentContext
) -> None:
    facts = ops_facts(ctx)
    facts.record_payment(at=NOW - 30, amount_twd=350, result="paid")
    facts.record_sync(at=NOW - 5.5)
    facts.record_beacon("ABCDEFABCD", at=NOW - 1000)
    ctx.services["outbox"] = CountingOutbox({"payment": 2})
    response = await client.get("/metrics")
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("shopedge_health_level", (("component", "mqtt"),))] == 1
    assert samples[("shopedge_health_level", (("component", "pos"),))] == 0
    assert samples[("shopedge_overall_health_level", ())] == 1
    assert samples[("shopedge_outbox_depth", (("stream", "payment"),))] == 2
    assert samples[("shopedge_outbox_depth", (("stream", "sale"),))] == 0
    assert samples[("shopedge_last_payment_time_seconds", (("result", "paid"),))] == NOW - 30
    assert samples[("shopedge_last_sync_time_seconds", ())] == NOW - 5.5
    assert samples[("shopedge_store_beacon_last_heard_time_seconds", (("hwid", "abcdefabcd"),))] == NOW - 1000
    assert samples[("shopedge_store_beacon_silent", (("hwid", "abcdefabcd"),))] == 1
    assert samples[("shopedge_store_beacon_silent", (("hwid", "0123456789"),))] == 1
    info = [k for k in samples if k[0] == "shopedge_info"]
    assert dict(info[0][1]) == {"store_id": "store-1", "device_id": "counter-1", "version": __version__}
    assert "1.8e+09" not in text  # timestamps are written in full


async def test_doctor_reads_beacon_state_from_the_running_agent(
    client: TestClient[web.Request, web.Application], ctx: AgentContext
) -> None:
    from agent.doctor import Environment, Status, check_beacon

    config = ctx.config.model_copy(
        update={"pos": ctx.config.pos.model_copy(update={"listen": f"127.0.0.1:{client.port}"})}
    )
    ops_facts(ctx).record_beacon("0123456789", at=NOW - 10)
    row = await check_beacon(config, Environment())
    assert row.status is Status.WARN and row.detail == "not heard recently: abcdefabcd"
    ops_facts(ctx).record_beacon("abcdefabcd", at=NOW - 299)
    row = await check_beacon(config, Environment())
    assert row.status is Status.PASS
    await client.close()
    row = await check_beacon(config, Environment())
    assert row.status is Status.WARN and "agent not running" in row.detail
