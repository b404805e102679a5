"""Child process of the outbox crash test: hammers one outbox until it is SIGKILLed.

Prints `ready` once open, then one line `<id> <seq>` on stdout for every critical put that
returned (i.e. was reported durable). Meanwhile it churns other streams (claims, acks, releases,
telemetry with expiry, dedupe repeats) so the kill lands in every kind of transaction.
Usage: python outbox_crash_child.py DB_PATH RUN_TAG
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from offline_queue import Durability, Outbox


async def main(db: Path, tag: str) -> None:
    box = await Outbox.open(db, max_attempts=3)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    counter = 0

    async def producer(worker: int) -> None:
        nonlocal counter
        while True:
            counter += 1
            seq = f"{tag}-{worker}-{counter}"
            # Every third put is repeated with its dedupe key: both calls must return one id.
            key = seq if counter % 3 == 0 else None
            rid = await box.put("crit", {"seq": seq, "pad": "p" * random.randint(0, 300)}, dedupe_key=key)
            if key is not None:
                assert await box.put("crit", {"seq": "duplicate"}, dedupe_key=key) == rid
            out.write(f"{rid} {seq}\n")
            out.flush()

    async def churn() -> None:
        rng = random.Random()
        while True:
            await box.put("churn", {"n": rng.random()})
            await box.put("presence", {"n": 1}, durability=Durability.TELEMETRY, expires_at=0.0)
            for record in await box.claim("churn", limit=5, lease=0.05):
                if rng.random() < 0.7:
                    await box.ack([record.id])
                else:
                    await box.release(record.id, "flaky", retry_at=0.0)

    await asyncio.gather(*(producer(w) for w in range(8)), churn())


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
