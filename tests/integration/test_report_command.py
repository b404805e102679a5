"""`shopedge report` as a subprocess over a state DB holding a known event set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from agent.db import migrate, open_state_db
from membership.coupons import REPORT_KEYS, record_fact_blocking
from tests.unit.test_coupons_funnel import EVENTS

ROOT = Path(__file__).resolve().parents[2]


def shopedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def make_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        '[device]\nstore_id = "store-001"\ndevice_id = "counter-1"\n[storage]\nstate_dir = "state"\n',
        encoding="utf-8",
    )
    db = open_state_db(tmp_path / "state" / "shopedge.db")
    migrate(db)
    for event in EVENTS:
        record_fact_blocking(db, event)
    record_fact_blocking(db, EVENTS[0])  # a replayed fact counts once
    db.close()
    return config


def test_report_json_and_png(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    png = tmp_path / "funnel.png"
    result = shopedge("report", "--config", str(config), "--since", "2026-09-01", "--json", "--png", str(png))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {k: document[k] for k in REPORT_KEYS} == {
        "payments": 5,
        "binding_qr_shown": 4,
        "binding_messages": 4,
        "new_friends": 4,
        "bound_members": 3,
        "binding_rate": 0.75,
        "coupons_replied": 1,
        "coupons_pushed": 2,
        "coupons_redeemed": 1,
        "messages_spent": 2,
        "cost_per_friend_twd": 12.2,
        "beacon_visits": 0,
        "greetings_replied": 0,
        "greeted_then_paid": 0,
    }
    with Image.open(png) as image:
        assert (image.format, image.size) == ("PNG", (1000, 856))


def test_report_table_and_bad_since(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    result = shopedge("report", "--config", str(config), "--since", "2026-09-01")
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "12.20" in result.stdout
    bad = shopedge("report", "--config", str(config), "--since", "last week")
    assert bad.returncode == 2
    assert "--since must be like" in bad.stderr
    assert "Traceback" not in bad.stderr
