"""Binding QR size and token speed, plus the relay's webhook answer time against a local
Mosquitto. Run by hand: `python bench/binding_bench.py`; prints one JSON object.

- `urls`: for sample store/device/order ids, the URL length and the QR version qrcode's
  best_fit picks at level M (what the paid screen should use) and, for comparison, at Q.
- `encode_per_s` / `verify_per_s`: token operations on this machine (one core).
- `relay_ms_p50` / `relay_ms_p95`: POST of one signed event until the relay's 200, which it sends
  once the event is committed (synchronous=FULL) to the relay's outbox; the publish to the
  broker (QoS 1, acked after PUBACK) follows from there. Skipped (null) when mosquitto is not
  installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import qrcode
from qrcode.constants import ERROR_CORRECT_M, ERROR_CORRECT_Q

from agent.config import parse_config
from membership.binding import encode_token, issue_binding, verify_token

SAMPLES = [
    ("demo-store", "counter-1", "A20261123-0042"),
    ("demo-store", "counter-1", "20261123000042"),
    ("taipei-0012", "till-02", "POS1-000123"),
    ("s1", "d1", "1"),
    ("kaohsiung-main-0001", "counter-12", "ORD-2026-11-23-000123"),
    ("demo-store", "counter-1", "7f0c2d0e-6c1b-4c53-9a53-2f4a3b8e9d10"),
]
NOW = 1_795_000_000.0


def version(url: str, level: int) -> int:
    qr = qrcode.QRCode(error_correction=level)
    qr.add_data(url)
    return int(qr.best_fit())


def config(store: str, device: str) -> object:
    return parse_config(
        {
            "device": {"store_id": store, "device_id": device},
            "binding": {"key": "k" * 43},
            "line": {"oa_basic_id": "@123abcde"},
        },
        environ={},
    )


def url_table() -> list[dict[str, object]]:
    rows = []
    for store, device, order in SAMPLES:
        token, url = issue_binding(config(store, device), order, NOW)  # type: ignore[arg-type]
        rows.append(
            {
                "store_id": store,
                "device_id": device,
                "order_id": order,
                "token_length": len(token),
                "url_length": len(url),
                "qr_version_m": version(url, ERROR_CORRECT_M),
                "qr_version_q": version(url, ERROR_CORRECT_Q),
            }
        )
    return rows


def token_speed() -> tuple[float, float]:
    from membership.binding import BindingClaims

    claims = BindingClaims(
        store_id="demo-store",
        device_id="counter-1",
        order_id="A20261123-0042",
        issued_at=int(NOW),
        ttl_minutes=30,
    )
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        token = encode_token(claims, b"k" * 32)
    encode = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(n):
        verify_token(token, key=b"k" * 32, store_id="demo-store", now=NOW)
    return encode, n / (time.perf_counter() - started)


async def relay_latency(count: int = 300) -> dict[str, float] | None:
    if shutil.which("mosquitto", path="/usr/sbin:/usr/bin:/usr/local/sbin") is None:
        return None
    import aiohttp

    from emulators.messaging.webhooks import follow_event, new_user_id, post_webhook
    from tests.integration._broker import mosquitto
    from tests.integration.test_relay import SECRET, relay_config, running_relay

    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        config = relay_config(port, Path(tmp) / "relay")
        async with running_relay(config) as url, aiohttp.ClientSession() as http:
            times = []
            for _ in range(count):
                started = time.perf_counter()
                status, _ = await post_webhook(
                    url, [follow_event(new_user_id())], channel_secret=SECRET, session=http
                )
                times.append((time.perf_counter() - started) * 1000)
                assert status == 200
    times.sort()
    return {
        "relay_ms_p50": round(statistics.median(times), 2),
        "relay_ms_p95": round(times[int(len(times) * 0.95) - 1], 2),
        "relay_requests": count,
    }


def main() -> None:
    encode, verify = token_speed()
    result: dict[str, object] = {
        "urls": url_table(),
        "encode_per_s": round(encode),
        "verify_per_s": round(verify),
        "relay_ms_p50": None,
        "relay_ms_p95": None,
    }
    with contextlib.suppress(KeyboardInterrupt):
        latency = asyncio.run(relay_latency())
        if latency:
            result.update(latency)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
