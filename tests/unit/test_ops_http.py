"""The status page's beacon rule and the metric text format, without a server."""

from __future__ import annotations

from agent.ops_http import OpsSnapshot, beacon_states, render_metrics, render_status_html
from base.health import ComponentHealth, Level

HWIDS = ["0123456789", "abcdefabcd"]


def test_recorded_sightings_decide_by_age() -> None:
    states = beacon_states(HWIDS, {"0123456789": 100.0}, now=350.0, silent_after=300.0)
    assert [(s.hwid, s.silent) for s in states] == [("0123456789", False), ("abcdefabcd", True)]
    assert beacon_states(HWIDS, {"0123456789": 100.0}, now=401.0, silent_after=300.0)[0].silent


def test_without_sightings_the_ble_components_watch_decides() -> None:
    detail = "scanning hci0 (active); store beacon abcdefabcd silent"
    states = beacon_states(HWIDS, {}, now=0.0, silent_after=300.0, ble_detail=detail)
    assert [(s.hwid, s.silent) for s in states] == [("0123456789", False), ("abcdefabcd", True)]
    both = beacon_states(
        HWIDS, {}, now=0.0, silent_after=300.0, ble_detail="x; store beacon 0123456789, abcdefabcd silent"
    )
    assert all(s.silent for s in both)
    assert not any(
        s.silent for s in beacon_states(HWIDS, {}, now=0.0, silent_after=1.0, ble_detail="scanning")
    )
    assert all(s.silent for s in beacon_states(HWIDS, {}, now=0.0, silent_after=1.0))


def _snap(**changes: object) -> OpsSnapshot:
    base: dict[str, object] = {
        "now": 1_800_000_100.0,
        "started_at": 1_800_000_000.0,
        "store_id": "s",
        "device_id": "d",
        "device_name": "n",
        "overall": Level.RED,
        "components": (ComponentHealth(name='we"ird\\name', level=Level.RED, detail="x", since=0.0),),
        "queue_depths": None,
        "last_payment_at": None,
        "last_payment_amount_twd": None,
        "last_payment_result": None,
        "last_sync_at": None,
    }
    base.update(changes)
    return OpsSnapshot(**base)  # type: ignore[arg-type]


def test_metric_label_values_are_escaped_and_optional_families_omitted() -> None:
    text = render_metrics(_snap())
    assert 'shopedge_health_level{component="we\\"ird\\\\name"} 2' in text
    assert "shopedge_outbox_depth" not in text and "shopedge_last_payment" not in text
    assert "shopedge_start_time_seconds 1800000000\n" in text
    assert text.endswith("\n")


def test_status_page_uptime_and_escaping() -> None:
    page = render_status_html(_snap())
    assert "up 100 s" in page
    assert "we&quot;ird\\name" in page
