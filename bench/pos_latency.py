"""POS request -> customer display latency, with the LINE Pay emulator answering instantly.

Runs the real payment service, journal (SQLite file, synchronous=FULL), durable outbox and POS
HTTP API on 127.0.0.1 in-process, with a *recording* display driver (it timestamps `show()`; no
rendering), and times, one sale at a time like a till:
- qr: POST /v1/payments until the PayScreen with the LINE Pay QR is shown (the request call
  to LINE Pay happens in between);
- scan_code: POST /v1/payments until the WaitingScreen is shown.

Prints one JSON object. Usage: python bench/pos_latency.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulators.linepay import EmulatorServer
from tests.integration.payments.conftest import CHANNEL_ID, CHANNEL_SECRET
from tests.integration.payments.harness import TOKEN, running


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(n: int) -> dict[str, Any]:
    results: dict[str, list[float]] = {"qr": [], "scan_code": []}
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            EmulatorServer(channel_id=CHANNEL_ID, channel_secret=CHANNEL_SECRET) as emulator,
            running(Path(tmp), emulator.url, real_outbox=True) as h,
        ):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for i in range(n + 10):  # the first 10 warm up connections and caches
                for method in ("qr", "scan_code"):
                    body: dict[str, Any] = {
                        "order_id": f"{method}-{i}",
                        "amount": 100 + i,
                        "currency": "TWD",
                        "product_name": "bench",
                        "method": method,
                    }
                    if method == "scan_code":
                        body["one_time_key"] = emulator.state.issue_key(time.time())
                    want = "PayScreen" if method == "qr" else "WaitingScreen"
                    seen = len(h.display.screens)
                    h.display.changed.clear()
                    started = asyncio.get_running_loop().time()
                    async with h.http.post(h.url + "/v1/payments", json=body, headers=headers) as r:
                        assert r.status == 201, await r.text()
                    while not any(type(s).__name__ == want for s in h.display.screens[seen:]):
                        h.display.changed.clear()
                        await asyncio.wait_for(h.display.changed.wait(), timeout=5)
                    index = next(
                        j
                        for j in range(seen, len(h.display.screens))
                        if type(h.display.screens[j]).__name__ == want
                    )
                    if i >= 10:
                        results[method].append((h.display.times[index] - started) * 1000)
                    if method == "qr":
                        async with h.http.post(
                            h.url + f"/v1/payments/{body['order_id']}/cancel", headers=headers
                        ):
                            pass
    qr, scan = results["qr"], results["scan_code"]
    return {
        "pos_to_display_ms_p50": round(pct(qr, 0.5), 2),
        "pos_to_display_ms_p95": round(pct(qr, 0.95), 2),
        "pos_to_display_ms_max": round(max(qr), 2),
        "scan_code_to_waiting_ms_p50": round(pct(scan, 0.5), 2),
        "scan_code_to_waiting_ms_p95": round(pct(scan, 0.95), 2),
        "mean_ms": round(statistics.mean(qr), 2),
        "n": len(qr),
        "measured": "POST /v1/payments (method qr) -> PayScreen shown; includes the LINE Pay request call",
        "display_driver": "recording (in-process, timestamps show(); no rendering)",
        "emulator": "in-process LINE Pay emulator, no injected delay",
        "journal": "SQLite file, WAL, synchronous=FULL, plus the durable outbox (offline_queue)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.n))))


if __name__ == "__main__":
    main()
