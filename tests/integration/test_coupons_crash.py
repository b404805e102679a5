"""A real process killed (os._exit, no cleanup) after LINE accepted a coupon and before the agent
recorded it; the restarted agent must not deliver a second coupon."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.config import load_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db, prepare_state_db
from emulators.messaging import MessagingEmulator, running_emulator
from membership.coupons import CouponService, LedgerState
from membership.coupons._ledger import get_blocking
from offline_queue import Outbox

ROOT = Path(__file__).resolve().parents[2]
USER = "U" + "c" * 32

# Runs in a child process: queue (or reply) the welcome coupon, then die the moment the agent
# tries to record the send, exactly as a power cut would.
CHILD = """
import asyncio, os, sys
import membership.coupons._push_jobs as push_jobs
import membership.coupons._service as svc
from agent.config import load_config
from agent.context import AgentContext
from membership.coupons import CouponService, WelcomeRequest, deliver_welcome
from agent.db import open_state_db, prepare_state_db
from offline_queue import Outbox

real = svc.transition_blocking

def die_on_sent(db, *args, **kwargs):
    if kwargs.get("to_state") is svc.LedgerState.SENT:
        os._exit(137)
    return real(db, *args, **kwargs)

svc.transition_blocking = die_on_sent  # the reply path
push_jobs.transition_blocking = die_on_sent  # the push path

async def main():
    config = load_config(sys.argv[1])
    db = open_state_db(config.db_path)
    outbox = await Outbox.open(config.db_path, prepare=prepare_state_db)
    ctx = AgentContext(config=config, db=db, services={"outbox": outbox})
    service = CouponService(ctx)
    token = sys.argv[3] or None
    request = WelcomeRequest(
        line_user_id=sys.argv[2], store_id="store-001", device_id="counter-1", order_id="o1",
        reply_token=token, reply_token_received_at=__import__("time").time() if token else None,
    )
    await deliver_welcome(ctx, request)
    await service.drain_once()
    sys.exit(3)  # not reached: the send is never recorded

asyncio.run(main())
"""


def write_config(tmp_path: Path, base_url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[device]
store_id = "store-001"
device_id = "counter-1"
[storage]
state_dir = "{tmp_path / "state"}"
[line]
api_base = "{base_url}"
channel_access_token = "tok"
""",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("reply", [False, True], ids=["push", "reply"])
async def test_killed_between_send_and_record_no_second_coupon(tmp_path: Path, reply: bool) -> None:
    emulator = MessagingEmulator(access_tokens={"tok"})
    async with running_emulator(emulator) as (_, base_url):
        config_path = write_config(tmp_path, base_url)
        config = load_config(config_path)
        db = open_state_db(config.db_path)
        migrate(db)
        db.close()
        token = emulator.issue_reply_token(USER) if reply else ""
        emulator.add_friend(USER)
        child = await _run_child(config_path, token)
        assert child.returncode == 137, child.stderr
        assert [d.via for d in emulator.deliveries] == ["reply" if reply else "push"]

        db = open_state_db(config.db_path)
        outbox = await Outbox.open(
            config.db_path, prepare=prepare_state_db, clock=lambda: time.time() + 120
        )  # lease ran out
        ctx = AgentContext(config=config, db=db, services={"outbox": outbox})
        service = CouponService(ctx)
        try:
            assert get_blocking(db, "welcome", USER).state is (  # type: ignore[union-attr]
                LedgerState.REPLYING if reply else LedgerState.QUEUED
            )
            await service.recover()
            for _ in range(5):
                await service.drain_once()
            row = get_blocking(db, "welcome", USER)
            assert row is not None
            assert row.state is (LedgerState.UNKNOWN if reply else LedgerState.SENT)
            assert len(emulator.deliveries) == 1  # push: the resend got 409; reply: never resent
            if not reply:
                assert row.request_id == emulator.deliveries[0].request_id
        finally:
            await service.aclose()
            await outbox.close()
            db.close()


async def _run_child(config_path: Path, token: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(config_path),
        USER,
        token,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return subprocess.CompletedProcess([], proc.returncode or 0, out.decode(), err.decode())
