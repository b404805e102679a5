"""The support bundle (`shopedge doctor --bundle FILE`): one .tar.gz a technician can attach to
a ticket without leaking anything.

Owns what goes in and the redaction rule: the config with every secret-typed key replaced by
"***" (the secrets file itself is never read into the bundle), the doctor rows, outbox stats,
recent agent logs and basic system facts, where every text is passed through the same scrubber
as the logs (configured secret values and bearer tokens).
"""

from __future__ import annotations

import io
import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import ShopEdgeConfig, secret_values
from agent.doctor import Row
from agent.logs import REDACTED, RedactingFilter
from agent.provisioning import dump_toml, secret_keys

__all__ = ["redact_config_data", "redact_config_text", "write_bundle"]

LOG_LINES = 2000
JOURNAL_TIMEOUT_S = 15.0


def redact_config_data(data: dict[str, Any]) -> dict[str, Any]:
    """Parsed config data with every secret-typed key's value replaced."""
    hidden = secret_keys()
    out: dict[str, Any] = {}
    for section, body in data.items():
        if isinstance(body, dict):
            out[section] = {
                name: (REDACTED if f"{section}.{name}" in hidden and value else value)
                for name, value in body.items()
            }
        else:
            out[section] = body
    return out


def redact_config_text(text: str) -> str:
    """For a config that does not parse: blank the value of any line whose key is a secret name."""
    names = {key.split(".", 1)[1] for key in secret_keys()}
    pattern = re.compile(r"^(\s*(?:" + "|".join(sorted(names)) + r")\s*=\s*).*$", re.MULTILINE)
    return pattern.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)


def _config_entry(config_path: Path) -> str:
    """The config as the agent sees it (secrets file merged in), every secret shown as ***."""
    from agent.ops_files import read_existing
    from agent.provisioning import ProvisionError

    try:
        data = read_existing(config_path)
    except ProvisionError as exc:
        try:
            text = config_path.read_text(encoding="utf-8")
        except OSError:
            return "# config not readable: " + "; ".join(exc.problems) + "\n"
        return "# config does not parse; shown with secret lines blanked\n" + redact_config_text(text)
    return "# secrets merged from the secrets file and shown as ***\n" + dump_toml(redact_config_data(data))


def _journal(unit: str) -> str:
    if shutil.which("journalctl") is None:
        return "journalctl not available on this machine\n"
    try:
        result = subprocess.run(
            ["journalctl", "-u", unit, "-n", str(LOG_LINES), "-o", "cat", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=JOURNAL_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"journalctl failed: {exc!r}\n"
    return result.stdout or result.stderr or f"no journal entries for {unit} on this machine\n"


async def _queue_stats(config: ShopEdgeConfig) -> dict[str, Any]:
    from agent.doctor import outbox_stats

    return await outbox_stats(config)


def _system() -> dict[str, Any]:
    return {
        "shopedge": __version__,
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_bundle(
    path: Path,
    *,
    config_path: Path,
    config: ShopEdgeConfig | None,
    rows: Sequence[Row],
    log_text: str | None = None,
) -> None:
    """Write the bundle; `log_text` replaces the journal (for tests and non-systemd machines)."""
    import asyncio

    scrubber = RedactingFilter(secret_values(config) if config is not None else ())
    queue: dict[str, Any]
    if config is None:
        queue = {"error": "config invalid; queue not inspected"}
    else:
        try:
            queue = asyncio.run(_queue_stats(config))
        except Exception as exc:  # the bundle is written even when the outbox cannot be opened
            queue = {"error": repr(exc)}
    entries = {
        "config.toml": _config_entry(config_path),
        "doctor.json": json.dumps([row.as_dict() for row in rows], ensure_ascii=False, indent=2),
        "queue.json": json.dumps(queue, ensure_ascii=False, indent=2, default=str),
        "logs.txt": log_text if log_text is not None else _journal("shopedge.service"),
        "system.json": json.dumps(_system(), indent=2),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in entries.items():
            data = scrubber.scrub(text).encode("utf-8")
            info = tarfile.TarInfo(f"shopedge-support/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    path.chmod(0o600)
