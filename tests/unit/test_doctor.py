"""The doctor's verdicts without a network: LINE return codes, token answers, clock, disk,
outbox, font discovery, rendering and the exit code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from agent.doctor import (
    CLOCK_FLOOR,
    MIN_FREE_MB,
    Environment,
    Row,
    Status,
    clock_verdict,
    exit_code,
    free_space_verdict,
    line_token_verdict,
    linepay_signature,
    linepay_verdict,
    outbox_verdict,
    render_table,
)
from agent.support import redact_config_data, redact_config_text


def test_linepay_signature_follows_the_documented_formula() -> None:
    secret, path, nonce = "abc", "/v4/payments/orders/o-1/check", "n-1"
    mac = hmac.new(b"abc", b"abc/v4/payments/orders/o-1/checkn-1", hashlib.sha256).digest()
    assert linepay_signature(secret, path, "", nonce) == base64.b64encode(mac).decode()
    assert linepay_signature(secret, path, "a=1", nonce) != linepay_signature(secret, path, "", nonce)


@pytest.mark.parametrize(
    ("code", "status", "hint"),
    [
        ("1150", Status.PASS, ""),
        ("1106", Status.FAIL, "channel_secret"),
        ("0000", Status.WARN, "re-run"),
        ("9000", Status.FAIL, "linepay.mode"),
        ("", Status.FAIL, "linepay.mode"),
    ],
)
def test_linepay_verdict(code: str, status: Status, hint: str) -> None:
    row = linepay_verdict(200, {"returnCode": code, "returnMessage": "m"})
    assert row.status is status
    assert hint in row.hint


def test_line_token_verdict() -> None:
    ok = line_token_verdict(200, {"basicId": "@shop1", "displayName": "Shop"}, "shop1")
    assert ok.status is Status.PASS and ok.detail == "bot @shop1 (Shop)"
    other = line_token_verdict(200, {"basicId": "@other", "displayName": "X"}, "shop1")
    assert other.status is Status.WARN and "oa_basic_id" in other.hint
    assert line_token_verdict(200, {"basicId": "@other"}, "").status is Status.PASS
    bad = line_token_verdict(401, {"message": "Authentication failed."}, "shop1")
    assert bad.status is Status.FAIL and "channel access token" in bad.hint
    assert line_token_verdict(500, {}, "").status is Status.FAIL


def test_clock_verdict() -> None:
    assert clock_verdict(now=CLOCK_FLOOR - 1, kernel_state=0).status is Status.FAIL
    assert clock_verdict(now=CLOCK_FLOOR + 10, kernel_state=0).status is Status.PASS
    assert clock_verdict(now=CLOCK_FLOOR + 10, kernel_state=5).status is Status.WARN
    assert clock_verdict(now=CLOCK_FLOOR + 10, kernel_state=None).status is Status.WARN
    # A wrong clock fails even when the kernel believes it is synchronised.
    assert "NTP" in clock_verdict(now=0.0, kernel_state=0).hint


def test_clock_verdict_with_skew_from_line() -> None:
    now = CLOCK_FLOOR + 1000
    assert clock_verdict(now=now, kernel_state=0, skew=0.4).status is Status.PASS
    assert "+0 s from LINE's clock" in clock_verdict(now=now, kernel_state=0, skew=0.4).detail
    assert clock_verdict(now=now, kernel_state=0, skew=-30).status is Status.WARN
    far = clock_verdict(now=now, kernel_state=0, skew=3600)
    assert far.status is Status.FAIL and "+3600 s from LINE's clock" in far.detail and "NTP" in far.hint
    # A small skew does not hide an unsynchronised kernel clock (it will drift).
    assert clock_verdict(now=now, kernel_state=5, skew=0.0).status is Status.WARN


def test_free_space_verdict() -> None:
    assert free_space_verdict(MIN_FREE_MB - 1, 200)[0] is Status.FAIL
    assert free_space_verdict(150, 200)[0] is Status.WARN
    assert free_space_verdict(5000, 200)[0] is Status.PASS


def test_outbox_verdict() -> None:
    assert outbox_verdict({"exists": False, "path": "/x"}).status is Status.PASS
    assert outbox_verdict({"exists": True, "path": "/x", "total": 3}).status is Status.PASS
    dead = outbox_verdict({"exists": True, "path": "/x", "total": 3, "dead_letters": 2})
    assert dead.status is Status.WARN and "2 dead letters" in dead.detail
    deep = outbox_verdict({"exists": True, "path": "/x", "total": 5000})
    assert deep.status is Status.WARN and "broker" in deep.hint


def test_font_candidates_follow_the_font_roots(tmp_path: Path) -> None:
    from drivers.display.fonts import CANDIDATES

    assert Environment().font_candidates() == CANDIDATES
    moved = Environment(font_roots=(tmp_path,)).font_candidates()
    assert moved[0][0] == str(tmp_path / "opentype/noto/NotoSansCJK-Regular.ttc")
    assert len(moved) == len(CANDIDATES)


def test_exit_code_and_table() -> None:
    rows = [
        Row(check="config", status=Status.PASS, detail="ok"),
        Row(check="clock", status=Status.WARN, detail="late", hint="enable NTP"),
    ]
    assert exit_code(rows) == 0
    rows.append(Row(check="broker", status=Status.FAIL, detail="down", hint="start it"))
    assert exit_code(rows) == 1
    table = render_table(rows)
    assert table.splitlines()[0] == "PASS  config  ok"
    assert "-> enable NTP" in table and "-> start it" in table


def test_bundle_redaction() -> None:
    data = {"secrets_file": "s.toml", "mqtt": {"host": "h", "password": "pw"}, "line": {"channel_secret": ""}}
    assert redact_config_data(data) == {
        "secrets_file": "s.toml",
        "mqtt": {"host": "h", "password": "***"},
        "line": {"channel_secret": ""},
    }
    text = '[mqtt]\npassword = "pw" oops\nhost = "h"\n  channel_secret="x"\n'
    assert redact_config_text(text) == '[mqtt]\npassword = "***"\nhost = "h"\n  channel_secret="***"\n'


def test_clock_floor_is_a_past_date() -> None:
    assert time.time() > CLOCK_FLOOR


def test_beacon_verdict() -> None:
    from agent.doctor import beacon_verdict

    assert beacon_verdict([], None).status is Status.WARN
    assert "not running" in beacon_verdict(["0123456789"], None).detail
    heard = {"beacons": [{"hwid": "0123456789", "silent": False}, {"hwid": "abcdefabcd", "silent": True}]}
    assert beacon_verdict(["0123456789"], heard).status is Status.PASS
    both = beacon_verdict(["0123456789", "abcdefabcd"], heard)
    assert both.status is Status.WARN and both.detail == "not heard recently: abcdefabcd"
    assert beacon_verdict(["1111111111"], heard).status is Status.WARN
