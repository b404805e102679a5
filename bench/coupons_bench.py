"""Welcome-coupon delivery throughput: 1,000 conversions for 200 LINE users against the
Messaging API emulator on 127.0.0.1, with the real SQLite ledger and outbox (synchronous=FULL).

Half the users convert with a fresh reply token (free reply), half without (push through the
outbox); each user converts 5 times, all at once. Measures the time until every conversion is
answered, the time until every push is delivered, the reply-path latency per conversion, and
checks that every user received exactly one coupon. Then 50 more shoppers convert one at a
time (the counter's real pace) for the reply path's own latency (ledger writes at FULL sync).

Run by hand: python bench/coupons_bench.py [--users N] [--copies N]. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import parse_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db, prepare_state_db
from emulators.messaging import MessagingEmulator, running_emulator
from membership.coupons import CouponService, DeliveryStatus, WelcomeRequest, deliver_welcome
from offline_queue import Outbox


async def run(users: int, copies: int) -> dict[str, object]:
    emulator = MessagingEmulator(access_tokens={"tok"}, quota_value=10**6)
    async with running_emulator(emulator) as (_, base_url):
        with tempfile.TemporaryDirectory() as tmp:
            config = parse_config(
                {
                    "device": {"store_id": "bench", "device_id": "counter-1"},
                    "storage": {"state_dir": tmp},
                    "line": {"api_base": base_url, "channel_access_token": "tok"},
                    "campaigns": [{"name": "welcome", "monthly_budget": 10**6}],
                    "coupons": {"push_batch": 100},
                },
                environ={},
            )
            engine = open_state_db(config.db_path)
            migrate(engine)
            outbox = await Outbox.open(config.db_path, prepare=prepare_state_db)
            ctx = AgentContext(config=config, db=engine, services={"outbox": outbox})
            service = CouponService(ctx)
            requests = []
            for n in range(users):
                user = f"U{n:032x}"
                emulator.add_friend(user)
                for _ in range(copies):
                    token = emulator.issue_reply_token(user) if n % 2 == 0 else None
                    requests.append(
                        WelcomeRequest(
                            line_user_id=user,
                            store_id="bench",
                            device_id="counter-1",
                            order_id=f"o{n}",
                            reply_token=token,
                            reply_token_received_at=time.time() if token else None,
                        )
                    )

            async def timed(request: WelcomeRequest) -> tuple[float, DeliveryStatus]:
                start = time.perf_counter()
                result = await deliver_welcome(ctx, request)
                return time.perf_counter() - start, result.status

            start = time.perf_counter()
            results = await asyncio.gather(*(timed(r) for r in requests))
            answered = time.perf_counter() - start
            while await outbox.depth("coupon_push"):
                await service.drain_once()
            settled = time.perf_counter() - start
            # One shopper at a time (the counter's real pace): the reply path's own latency.
            single = []
            for n in range(users, users + 50):
                user = f"U{n:032x}"
                token = emulator.issue_reply_token(user)
                request = WelcomeRequest(
                    line_user_id=user,
                    store_id="bench",
                    device_id="counter-1",
                    order_id=f"o{n}",
                    reply_token=token,
                    reply_token_received_at=time.time(),
                )
                single.append((await timed(request))[0])
            await service.aclose()
            await outbox.close()
            engine.close()
    single.sort()
    per_user: dict[str, int] = {}
    for delivery in emulator.deliveries:
        per_user[delivery.to] = per_user.get(delivery.to, 0) + 1
    replied = sorted(t for t, status in results if status is DeliveryStatus.REPLIED)
    return {
        "bench": "coupons",
        "python": platform.python_version(),
        "conversions": len(requests),
        "users": users,
        "exactly_one_coupon_each": len(per_user) == users + 50 and set(per_user.values()) == {1},
        "replies": sum(1 for d in emulator.deliveries if d.via == "reply"),
        "pushes": sum(1 for d in emulator.deliveries if d.via == "push"),
        "all_answered_s": round(answered, 3),
        "all_delivered_s": round(settled, 3),
        "conversions_per_s": round(len(requests) / answered, 1),
        "burst_reply_latency_ms_p50": round(statistics.median(replied) * 1000, 1) if replied else None,
        "single_reply_latency_ms_p50": round(statistics.median(single) * 1000, 1),
        "single_reply_latency_ms_p95": round(single[int(len(single) * 0.95) - 1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--copies", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.users, args.copies))))


if __name__ == "__main__":
    main()
