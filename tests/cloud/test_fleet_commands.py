"""`shopedge cloud report | devices | config set | config show` on what a real worker stored
from a real Mosquitto, on SQLite and PostgreSQL. The config round trip answers with the
device's own downlink logic (`decide`, `apply_live_config`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pytest
from PIL import Image

from agent.config import parse_config
from agent.sync._downlink import SeenIds, apply_live_config, decide
from base.envelope import Envelope, format_ts
from tests.cloud._fleet import (
    REPO,
    Publisher,
    Worker,
    count_envelopes,
    fleet_broker,
    wait_until,
    write_cloud_toml,
)
from tests.cloud._messages import conversion, envelope, message, payment, status

ZONE = ZoneInfo("Asia/Taipei")
NOW = time.time()
TODAY = datetime.fromtimestamp(NOW, ZONE).date()


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "cloud", *args, "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def fleet(tmp_path: Path, fleet_url: str) -> Iterator[tuple[Path, Publisher, str, int]]:
    with fleet_broker(tmp_path) as port:
        toml = write_cloud_toml(tmp_path, database_url=fleet_url, port=port)
        worker = Worker(toml, "a", tmp_path)
        publisher = Publisher(port)
        try:
            worker.start()
            worker.wait_for_log("mqtt connected")
            yield toml, publisher, fleet_url, port
        finally:
            publisher.close()
            worker.stop()


def _traffic() -> list[tuple[str, bytes]]:
    out = []
    at = NOW - 60
    # Taipei: two paid tickets, one new friend bound, one coupon replied and redeemed.
    out.append(
        message(
            envelope("payment", 1, payment("T-1", 300, at), store="taipei", device="c1"),
            store="taipei",
            device="c1",
        )
    )
    out.append(
        message(
            envelope("payment", 2, payment("T-2", 100, at), store="taipei", device="c1"),
            store="taipei",
            device="c1",
        )
    )
    conv = conversion("T-1", "U-a", at + 5) | {"store_id": "taipei", "device_id": "c1"}
    out.append(
        message(envelope("conversion", 1, conv, store="taipei", device="c1"), store="taipei", device="c1")
    )
    for seq, event in ((1, "replied"), (2, "redeemed")):
        data = {"event": event, "campaign": "welcome", "line_user_id": "U-a", "at": at + 10}
        out.append(
            message(
                envelope("coupon_push", seq, data, store="taipei", device="c1"), store="taipei", device="c1"
            )
        )
    # Tainan: one payment, and its device's own summary for a closed day (seq 3: 2 went missing).
    out.append(
        message(
            envelope("payment", 1, payment("N-1", 50, at), store="tainan", device="c9"),
            store="tainan",
            device="c9",
        )
    )
    closed = TODAY.fromordinal(TODAY.toordinal() - 2).isoformat()
    summary = {
        "type": "daily_summary",
        "store_id": "tainan",
        "device_id": "c9",
        "day": closed,
        "payments": 40,
        "payments_twd": 8000,
        "binding_qr_shown": 40,
        "binding_messages": 12,
        "new_friends": 10,
        "bound_members": 12,
        "coupons_replied": 10,
        "coupons_pushed": 2,
        "coupons_redeemed": 4,
        "linepay_fee_twd": 50.0,
        "message_cost_twd": 0.4,
    }
    out.append(
        message(envelope("funnel", 1, summary, store="tainan", device="c9"), store="tainan", device="c9")
    )
    out.append(
        message(
            envelope("funnel", 3, {"type": "member_tag"}, store="tainan", device="c9"),
            store="tainan",
            device="c9",
        )
    )
    health = {"outbox_depth": 900, "level": "amber"}
    out.append(
        message(envelope("health", 1, health, store="tainan", device="c9"), store="tainan", device="c9")
    )
    return out


def test_report_devices_and_png(tmp_path: Path, fleet: tuple[Path, Publisher, str, int]) -> None:
    toml, publisher, url, _ = fleet
    traffic = _traffic()
    publisher.publish_all(traffic)
    for store, device, state in (("taipei", "c1", "online"), ("tainan", "c9", "offline")):
        topic, payload = status(state, NOW - 30, store=store, device=device, version="0.2.0")
        publisher.publish(topic, payload, retain=True).wait_for_publish(5)
    wait_until(lambda: count_envelopes(url) == len(traffic), 30, "all traffic stored")
    time.sleep(0.5)

    done = _cli(toml, "report", "--since", "7d", "--json", "--png", str(tmp_path / "fleet.png"))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    by = {(r["scope"], r["store_id"], r["day"]): r for r in rows}
    taipei = by[("store", "taipei", None)]
    assert (taipei["payments"], taipei["payments_twd"], taipei["new_friends"], taipei["bound_members"]) == (
        2,
        400,
        1,
        1,
    )
    assert (taipei["coupons_replied"], taipei["coupons_redeemed"], taipei["redemption_rate"]) == (1, 1, 1.0)
    assert taipei["cost_per_friend_twd"] == round(300 * 0.022, 2)
    tainan = by[("store", "tainan", None)]
    assert tainan["payments"] == 41 and tainan["new_friends"] == 10 and tainan["summarised_days"] == 1
    assert tainan["cost_per_friend_twd"] == round(50.4 / 10, 2)
    fleet_row = by[("fleet", "*", None)]
    assert fleet_row["payments"] == 43 and fleet_row["ad_cost_per_friend_twd"] == [20.0, 50.0]
    for key in (
        "store_id",
        "day",
        "payments",
        "new_friends",
        "bound_members",
        "binding_rate",
        "coupons_replied",
        "coupons_pushed",
        "coupons_redeemed",
        "messages_spent",
        "cost_per_friend_twd",
    ):
        assert all(key in r for r in rows)
    chart = Image.open(tmp_path / "fleet.png")
    assert chart.width >= 900
    colours = {chart.getpixel((x, y)) for x in range(0, chart.width, 3) for y in range(180, 530, 3)}
    assert (6, 199, 85) in colours and (233, 30, 99) in colours  # payment and redeemed bars drawn

    only = json.loads(_cli(toml, "report", "--store", "taipei", "--json").stdout)
    assert {r["store_id"] for r in only} == {"taipei", "*"}

    text = _cli(toml, "report")
    assert text.returncode == 0 and "FLEET" in text.stdout and "LINE ad" in text.stdout

    listing = json.loads(_cli(toml, "devices", "--json").stdout)
    devs = {(d["store_id"], d["device_id"]): d for d in listing["devices"]}
    assert (
        devs[("taipei", "c1")]["presence"] == "online" and devs[("taipei", "c1")]["agent_version"] == "0.2.0"
    )
    c9 = devs[("tainan", "c9")]
    assert c9["presence"] == "offline" and c9["outbox_depth"] == 900 and c9["backlogged"] is True
    assert c9["seq_missing"] == 1 and c9["seq_gaps"] == [{"stream": "funnel", "first_seq": 2, "last_seq": 2}]
    assert c9["last_event"]["funnel"]["last_seq"] == 3
    table = _cli(toml, "devices")
    assert "BACKLOG" in table.stdout and "2 device(s)" in table.stdout


class FakeCounter:
    """A device's downlink handling: subscribes to its down/+, decides with the device's code,
    applies with `apply_live_config` and replies on up/reply like `SyncService._reply`."""

    def __init__(self, port: int, store: str, device: str) -> None:
        self.store, self.device = store, device
        self.config = parse_config({"device": {"store_id": store, "device_id": device}}, environ={})
        self.seen = SeenIds()
        self.replies: list[dict[str, Any]] = []
        self.publisher = Publisher(port, client_id=f"dev-{store}-{device}")
        self.seq = 0
        self.publisher.client.on_message = self._on_message
        self.publisher.client.subscribe(f"shopedge/v1/{store}/{device}/down/+", qos=1)

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        for decision in decide(
            msg.topic, msg.payload, store_id=self.store, device_id=self.device, seen=self.seen
        ):
            if decision.action != "config" or decision.envelope is None:
                continue
            new, problems = apply_live_config(self.config, dict(decision.changes))
            if new is None:
                body = {
                    "request_id": decision.envelope.id,
                    "command": "config",
                    "ok": False,
                    "detail": "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())),
                }
            else:
                self.config = new
                body = {
                    "request_id": decision.envelope.id,
                    "command": "config",
                    "ok": True,
                    "detail": "applied",
                    "result": {"set": dict(decision.changes)},
                }
            self.seq += 1
            self.replies.append(body)
            reply = Envelope(
                id=f"{decision.envelope.id[:-12]}{self.seq:012d}",
                kind="reply",
                ts=format_ts(time.time()),
                seq=self.seq,
                data=body,
            )
            topic, payload = message(reply, store=self.store, device=self.device)
            self.publisher.publish(topic, payload)

    def close(self) -> None:
        self.publisher.close()


def test_config_set_reaches_device_and_show_lists_drift(fleet: tuple[Path, Publisher, str, int]) -> None:
    toml, publisher, _url, port = fleet
    for device in ("c1", "c2"):
        topic, payload = status("online", NOW, store="taipei", device=device)
        publisher.publish(topic, payload, retain=True).wait_for_publish(5)
    wait_until(lambda: "c2" in _cli(toml, "devices").stdout, 30, "both devices seen")
    c1 = FakeCounter(port, "taipei", "c1")
    try:
        done = _cli(toml, "config", "set", "--store", "taipei", "mqtt.batch_max=100", 'display.language="en"')
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("published") == 2
        wait_until(lambda: len(c1.replies) == 1, 20, "the device's reply")
        assert c1.config.mqtt.batch_max == 100
        # c1 answered, c2 never connected: show lists c2 as pending only.
        wait_until(lambda: "taipei/c1" not in _cli(toml, "config", "show").stdout, 20, "c1 in sync")
        shown = json.loads(_cli(toml, "config", "show", "--json").stdout)
        assert {(d["device_id"], d["state"]) for d in shown} == {("c2", "pending")}
        # A refused change: the device says why, show prints it.
        bad = _cli(toml, "config", "set", "taipei/c1", "mqtt.batch_max=0")
        assert bad.returncode == 0, bad.stderr
        wait_until(lambda: "refused" in _cli(toml, "config", "show").stdout, 20, "the refusal recorded")
        assert "greater than or equal to 1" in _cli(toml, "config", "show").stdout
    finally:
        c1.close()
    # An offline device gets the whole desired document when it comes (retained, QoS 1).
    c2 = FakeCounter(port, "taipei", "c2")
    try:
        wait_until(lambda: len(c2.replies) == 1, 20, "c2's reply after it came online")
        assert c2.config.mqtt.batch_max == 100 and c2.config.display.language == "en"
    finally:
        c2.close()
    bad_usage = _cli(toml, "config", "set", "taipei/c1", "batch_max")
    assert bad_usage.returncode == 2 and "SECTION.KEY=VALUE" in bad_usage.stderr
