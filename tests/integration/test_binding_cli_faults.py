"""Issue 14, item 8: `shopedge binding verify` answers with the device's own rule, so it never
says "valid" for a token the device rejects (already used for a conversion, issued in the
future). Subprocess, real config file, real state DB."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.config import load_config
from agent.context import AgentContext
from agent.db import migrate, open_state_db
from emulators.messaging.webhooks import new_user_id, text_message_event
from membership.binding import URL_PROMPT, issue_binding
from membership.conversion import ConversionStatus, handle_line_event
from offline_queue import Outbox
from tests.integration.test_binding_cli import _shopedge

CONFIG = """
[device]
store_id = "demo-store"
device_id = "counter-1"
[storage]
state_dir = "{state}"
[binding]
key = "{key}"
[line]
oa_basic_id = "@123abcde"
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", key="k" * 32), encoding="utf-8")
    return path


def test_a_token_issued_in_the_future_is_rejected(tmp_path: Path) -> None:
    path = _config(tmp_path)
    token, _ = issue_binding(load_config(path), "F-1", time.time() + 3600)
    done = _shopedge("binding", "verify", token, "--config", str(path))
    assert (done.returncode, done.stdout.strip()) == (1, "rejected: not_yet_valid"), done.stdout + done.stderr
    assert not (tmp_path / "state").exists()  # verify never creates the state DB


def test_a_token_already_used_for_a_conversion_is_rejected(tmp_path: Path) -> None:
    path = _config(tmp_path)
    config = load_config(path)
    token, _ = issue_binding(config, "U-1", time.time())
    fresh = _shopedge("binding", "verify", token, "--config", str(path))
    assert fresh.returncode == 0 and fresh.stdout.startswith("valid: order U-1"), fresh.stdout

    async def convert() -> None:  # the shopper sends it; the device records the conversion
        db = open_state_db(config.db_path)
        migrate(db)
        outbox = await Outbox.open(config.db_path)
        try:
            ctx = AgentContext(config=config, db=db, services={"outbox": outbox})
            event = text_message_event(new_user_id(), URL_PROMPT + token)
            result = await handle_line_event(ctx, {"event": event})
            assert result.status is ConversionStatus.RECORDED
        finally:
            await outbox.close()
            db.close()

    asyncio.run(convert())
    used = _shopedge("binding", "verify", token, "--config", str(path))
    assert (used.returncode, used.stdout.strip()) == (1, "rejected: already_used"), used.stdout + used.stderr
