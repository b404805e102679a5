"""The counter funnel: payments, binding QRs, friends, members, coupons and cost per friend.

Prints a table per device and day (or `--json` with the totals at the top level and the days
under "days"), and with `--png FILE` also draws the funnel chart. Reads the facts this device
recorded in its state DB; `--since` is `7d`, `24h`, `90m` or a date `YYYY-MM-DD` (shop time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.cli import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--since", default="7d", help="start of the period: 7d, 24h, 90m or YYYY-MM-DD (default 7d)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--png", type=Path, metavar="FILE", help="also draw the funnel chart to FILE")


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from agent.commands import load_or_exit
    from agent.db import migrate, open_state_db
    from membership.coupons import facts_since_blocking, funnel_rows, funnel_total
    from membership.coupons._report import format_table, parse_since, render_chart, report_json

    config = load_or_exit(args.config)
    zone = config.coupons.timezone
    now = time.time()
    try:
        since = parse_since(args.since, now=now, zone=zone)
    except ValueError as exc:
        print(f"shopedge report: {exc}", file=sys.stderr)
        return 2
    db = open_state_db(config.db_path)
    try:
        migrate(db)
        facts = facts_since_blocking(db, since)
    finally:
        db.close()
    rows = funnel_rows(
        facts,
        zone=zone,
        fee_rate=config.linepay.fee_rate,
        message_cost_twd={c.name: c.message_cost_twd for c in config.campaigns},
        greeting_cost_twd={g.name: g.message_cost_twd for g in config.greetings},
        attribution_s=config.coupons.visit_attribution_h * 3600,
    )
    total = funnel_total(rows, store_id=config.device.store_id)
    plan = config.coupons.plan_free_messages
    if args.json:
        document = report_json(
            rows, total, since=since, until=now, store_id=config.device.store_id, plan_messages=plan
        )
        print(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        print(f"{config.device.name} ({config.device.store_id}) since {args.since}")
        print(format_table(rows, total, plan_messages=plan))
    if args.png is not None:
        title = f"{config.device.name}: 櫃台漏斗 Counter funnel ({args.since})"
        try:
            render_chart(total, title=title, font_path=config.display.font_path).save(args.png, format="PNG")
        except OSError as exc:
            print(f"shopedge report: cannot write {args.png}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if not args.json:
            print(f"chart written to {args.png}")
    return 0
