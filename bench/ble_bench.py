"""BLE throughput: frame parsing + presence engine vs TheengsDecoder's decodeBLE (Theengs Gateway).

A realistic stream (80 % phone adverts, 20 % beacons, 300 distinct devices, from
`drivers.ble.synth`) goes through `decode_advert` + `PresenceEngine.observe` with a clock tick
every simulated second (400 adverts/s, a busy shop). The peer decodes the same adverts with
`TheengsDecoder.decodeBLE`, given the JSON string Theengs Gateway builds per advert (the JSON
is built before timing starts, so the peer is not charged for it). One core, one process.

Run by hand: python bench/ble_bench.py [--adverts N] [--peer-adverts N]. Prints one JSON object.
The goal (issue #6): at least 100,000 adverts/s on one core and at least 100x the peer.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.ble.frames import decode_advert
from drivers.ble.presence import PresenceEngine, PresenceSettings
from drivers.ble.synth import DEMO_STORE_HWID, SynthAdvert, realistic_stream

ADVERTS_PER_SIM_SECOND = 400


def ours(stream: list[SynthAdvert], repeats: int) -> tuple[float, int, int]:
    """Best adverts/s over `repeats` runs, and the event and frame counts of the last."""
    best = 0.0
    events = frames_seen = 0
    for _ in range(repeats):
        settings = PresenceSettings(store_beacon_hwids=(DEMO_STORE_HWID,))
        now, wall = 0.0, 1_763_856_000.0
        engine = PresenceEngine(settings, now=now, wall=wall)
        events = frames_seen = 0
        observe, tick = engine.observe, engine.tick
        step = 1.0 / ADVERTS_PER_SIM_SECOND
        start = time.perf_counter()
        for i, advert in enumerate(stream):
            now += step
            wall += step
            frames = decode_advert(advert.manufacturer_data, advert.service_data)
            frames_seen += len(frames)
            events += len(
                observe(now=now, wall=wall, address=advert.address, rssi=advert.rssi, frames=frames)
            )
            if i % ADVERTS_PER_SIM_SECOND == 0:
                events += len(tick(now=now, wall=wall))
        elapsed = time.perf_counter() - start
        best = max(best, len(stream) / elapsed)
    return best, events, frames_seen


def theengs_json(advert: SynthAdvert) -> str:
    """The dict Theengs Gateway's callback builds: company id + payload hex, first service data."""
    data: dict[str, object] = {"id": advert.address, "rssi": advert.rssi}
    if advert.manufacturer_data:
        company, payload = next(iter(advert.manufacturer_data.items()))
        data["manufacturerdata"] = company.to_bytes(2, "little").hex() + payload.hex()
    if advert.service_data:
        uuid, payload = next(iter(advert.service_data.items()))
        data["servicedata"] = payload.hex()
        data["servicedatauuid"] = "0x" + uuid[4:8]
    return json.dumps(data)


def peer(stream: list[SynthAdvert], repeats: int) -> tuple[float, int]:
    from TheengsDecoder import decodeBLE

    payloads = [theengs_json(advert) for advert in stream]
    best = 0.0
    decoded = 0
    for _ in range(repeats):
        decoded = 0
        start = time.perf_counter()
        for payload in payloads:
            if decodeBLE(payload) is not None:
                decoded += 1
        elapsed = time.perf_counter() - start
        best = max(best, len(payloads) / elapsed)
    return best, decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adverts", type=int, default=400_000)
    parser.add_argument("--peer-adverts", type=int, default=10_000, help="a prefix (the peer is slow)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs")
    parser.add_argument("--peer-repeats", type=int, default=1)
    args = parser.parse_args()

    stream = realistic_stream(args.adverts, devices=300, beacon_share=0.2)
    beacon_adverts = sum(1 for a in stream if decode_advert(a.manufacturer_data, a.service_data))
    rate, events, frames = ours(stream, args.repeats)
    peer_rate, peer_decoded = peer(stream[: args.peer_adverts], args.peer_repeats)
    print(
        json.dumps(
            {
                "bench": "ble_parse_presence",
                "adverts": len(stream),
                "distinct_devices": len({a.address for a in stream}),
                "beacon_advert_share": round(beacon_adverts / len(stream), 3),
                "frames": frames,
                "events": events,
                "adverts_per_s": round(rate),
                "peer": "TheengsDecoder.decodeBLE",
                "peer_adverts": args.peer_adverts,
                "peer_decoded": peer_decoded,
                "peer_adverts_per_s": round(peer_rate),
                "speedup": round(rate / peer_rate, 1),
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
