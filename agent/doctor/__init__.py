"""`shopedge doctor`: one row per check, each pass/warn/fail with a fix hint a technician can act on.

Owns the checks and the rule for reading them: a check is a small function of the config (and
an `Environment` saying where to look), it never raises, and its row names what it looked at,
what it found and, unless it passed, the one thing to do next. The verdict logic (thresholds,
LINE return codes, clock state) is kept in pure functions beside each check so it is tested
without a network; the async shells do the looking, each bounded by a timeout from
`config.timeouts`.
"""


from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from agent.config import ConfigError, ShopEdgeConfig, load_config
from agent.doctor._device import (
    beacon_verdict,
    check_beacon,
    check_ble,
    check_clock,
    check_display,
    check_fonts,
    check_outbox,
    check_state_dir,
    clock_verdict,
    free_space_verdict,
    outbox_stats,
    outbox_verdict,
)
from agent.doctor._line_beacon import check_line_beacon, line_beacon_verdict
from agent.doctor._rows import CLOCK_FLOOR, MIN_FREE_MB, Environment, Row, Status, exit_code
from agent.doctor._services import (
    check_broker,
    check_line_token,
    check_linepay,
    line_token_verdict,
    linepay_signature,
    linepay_verdict,
)

__all__ = [
    "CHECKS",
    "CLOCK_FLOOR",
    "MIN_FREE_MB",
    "Environment",
    "Row",
    "Status",
    "beacon_verdict",
    "check_beacon",
    "check_ble",
    "check_broker",
    "check_config",
    "check_line_beacon",
    "check_line_token",
    "check_linepay",
    "check_outbox",
    "clock_verdict",
    "exit_code",
    "free_space_verdict",
    "line_beacon_verdict",
    "line_token_verdict",
    "linepay_signature",
    "linepay_verdict",
    "outbox_stats",
    "outbox_verdict",
    "render_table",
    "run_checks",
    "run_doctor",
]


# ---------------------------------------------------------------- running the checks

Check = Callable[[ShopEdgeConfig, Environment], Row | Awaitable[Row]]

CHECKS: dict[str, Check] = {
    "state_dir": check_state_dir,
    "clock": check_clock,
    "ble": check_ble,
    "display": check_display,
    "fonts": check_fonts,
    "broker": check_broker,
    "line_token": check_line_token,
    "linepay": check_linepay,
    "outbox": check_outbox,
    "beacon": check_beacon,
    "line_beacon": check_line_beacon,
}


async def _run_one(name: str, check: Check, config: ShopEdgeConfig, env: Environment) -> Row:
    try:
        if asyncio.iscoroutinefunction(check):
            return await check(config, env)  # type: ignore[no-any-return]
        return await asyncio.to_thread(check, config, env)  # type: ignore[arg-type]
    except Exception as exc:  # a broken check is a failed row, never a traceback
        return Row(
            check=name, status=Status.FAIL, detail=f"check crashed: {exc!r}", hint="report this as a bug"
        )


async def run_checks(
    config: ShopEdgeConfig, env: Environment | None = None, *, only: Sequence[str] | None = None
) -> list[Row]:
    """Run the checks (all, or `only` these names) concurrently; rows in CHECKS order."""
    env = env or Environment.from_environ()
    names = [name for name in CHECKS if only is None or name in only]
    return list(await asyncio.gather(*(_run_one(name, CHECKS[name], config, env) for name in names)))


def check_config(path: Path) -> tuple[ShopEdgeConfig | None, Row]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, Row(
            check="config",
            status=Status.FAIL,
            detail="; ".join(exc.problems),
            hint="fix the named key (see config.example.toml) or re-run `shopedge provision`",
        )
    return config, Row(check="config", status=Status.PASS, detail=f"{path} valid")


async def run_doctor(path: Path, env: Environment | None = None) -> tuple[ShopEdgeConfig | None, list[Row]]:
    """The config row, then every other check (skipped when the config cannot be loaded)."""
    config, row = await asyncio.to_thread(check_config, path)
    if config is None:
        return None, [row]
    return config, [row, *await run_checks(config, env)]


def render_table(rows: Sequence[Row]) -> str:
    """Fixed-width rows for a terminal: status, check, detail, then the hint on its own line."""
    marks = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL"}
    width = max((len(row.check) for row in rows), default=5)
    lines = []
    for row in rows:
        lines.append(f"{marks[row.status]}  {row.check:<{width}}  {row.detail}")
        if row.hint and row.status is not Status.PASS:
            lines.append(f"{'':4}  {'':<{width}}  -> {row.hint}")
    return "\n".join(lines)
