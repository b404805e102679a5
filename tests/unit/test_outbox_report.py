"""Rendering of `shopedge queue` output: ages, tables, JSON shapes."""

from __future__ import annotations

import pytest

from offline_queue import DeadLetter, Durability, StreamStats
from offline_queue._report import (
    dead_letters_json,
    dead_letters_table,
    format_age,
    render_table,
    stats_json,
    stats_table,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-3, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (90061, "1d01h"),
    ],
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_render_table_aligns_columns() -> None:
    out = render_table(["a", "num"], [["xyz", "1"], ["b", "1234"]], right={1})
    assert out.splitlines() == ["a     num", "---  ----", "xyz     1", "b    1234"]


def test_stats_table_has_totals_and_json_has_ages() -> None:
    stats = [
        StreamStats(
            stream="sale", depth=2, in_flight=1, waiting_retry=0, oldest_at=100.0, dead=0, nbytes=300
        ),
        StreamStats(
            stream="presence", depth=1, in_flight=0, waiting_retry=1, oldest_at=160.0, dead=3, nbytes=90
        ),
    ]
    lines = stats_table(stats, now=220.0).splitlines()
    assert lines[-1].split() == ["(all)", "3", "1", "1", "2m00s", "3", "390"]
    assert stats_json(stats, now=220.0)[1]["oldest_age_s"] == 60.0
    assert stats_table([], now=0) == "outbox is empty: no records and no dead letters"


def test_dead_letters_table_clips_reasons_to_one_line() -> None:
    letter = DeadLetter(
        id=7,
        stream="coupon_push",
        payload={"u": 1},
        dedupe_key=None,
        durability=Durability.CRITICAL,
        attempts=10,
        created_at=0.0,
        failed_at=40.0,
        reason="line one\nline two " + "x" * 200,
    )
    row = dead_letters_table([letter], now=100.0).splitlines()[2]
    assert "line one line two" in row and row.endswith("…") and "1m00s ago" in row
    assert dead_letters_json([letter])[0]["payload"] == {"u": 1}
    assert dead_letters_table([], now=0) == "no dead letters"
