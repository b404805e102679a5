"""Inspect the offline outbox: `stats` (depth, oldest record, dead letters per stream),
`dead-letters` (what gave up and why) and `retry ID` (put a dead letter back in its stream).

Reads the state database directly (read-only for stats and dead-letters), so it is safe while
the agent runs; `retry` takes one short write transaction.
"""

from __future__ import annotations

import argparse
import json
import sys

from agent.cli import add_config_argument
from agent.commands import load_or_exit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = sub.add_parser("stats", help="depth, in flight, retrying, oldest age and dead letters per stream")
    dead = sub.add_parser("dead-letters", help="records that gave up, with the reason")
    dead.add_argument("--stream", help="only this stream")
    dead.add_argument("--limit", type=int, default=100, help="at most this many (oldest first; default 100)")
    retry = sub.add_parser("retry", help="put one dead letter back at its place in its stream")
    retry.add_argument("id", type=int, metavar="ID", help="the dead letter's record id")
    for child in (stats, dead, retry):
        add_config_argument(child)
        child.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    import sqlite3
    import time

    from offline_queue import (
        OutboxError,
        connect_blocking,
        dead_letters_blocking,
        dead_letters_json,
        dead_letters_table,
        retry_dead_blocking,
        stats_blocking,
        stats_json,
        stats_table,
    )

    config = load_or_exit(args.config)
    db = config.db_path
    if not db.exists():
        print(f"shopedge queue: no state database at {db} (has the agent run yet?)", file=sys.stderr)
        return 1
    now = time.time()
    try:
        conn = connect_blocking(db, read_only=args.action != "retry")
    except OutboxError as exc:
        print(f"shopedge queue: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "stats":
            stats = stats_blocking(conn, now)
            print(json.dumps(stats_json(stats, now), indent=2) if args.json else stats_table(stats, now))
            return 0
        if args.action == "dead-letters":
            if args.limit < 1:
                print("shopedge queue: --limit must be at least 1", file=sys.stderr)
                return 2
            letters = dead_letters_blocking(conn, args.stream, args.limit)
            out = json.dumps(dead_letters_json(letters), indent=2, ensure_ascii=False)
            print(out if args.json else dead_letters_table(letters, now))
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            stream = conn.execute("SELECT stream FROM outbox_dead WHERE id = ?", (args.id,)).fetchone()
            found = retry_dead_blocking(conn, args.id)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if args.json:
            print(json.dumps({"id": args.id, "requeued": found, "stream": stream[0] if stream else None}))
        elif found:
            print(f"dead letter {args.id} re-queued at its place in stream {stream[0]!r} (attempts reset)")
        else:
            print(f"shopedge queue: no dead letter with id {args.id}", file=sys.stderr)
        return 0 if found else 1
    except sqlite3.Error as exc:
        print(f"shopedge queue: cannot read the outbox in {db}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
