"""Self-test every part of this device and say how to fix what fails (exit 1 on any fail).

Each row is pass, warn or fail with a hint. `--json` prints the rows for scripts;
`--bundle FILE` also writes a support bundle (config with secrets redacted, the rows, queue
stats and recent logs) to attach to a support ticket.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.cli import add_config_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--bundle", type=Path, metavar="FILE", help="also write a support bundle (.tar.gz)")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from agent.doctor import exit_code, render_table, run_doctor

    config, rows = asyncio.run(run_doctor(args.config))
    if args.json:
        print(
            json.dumps(
                {"ok": exit_code(rows) == 0, "rows": [row.as_dict() for row in rows]}, ensure_ascii=False
            )
        )
    else:
        print(render_table(rows))
    if args.bundle is not None:
        from agent.support import write_bundle

        write_bundle(args.bundle, config_path=args.config, config=config, rows=rows)
        if not args.json:
            print(f"support bundle written to {args.bundle}")
    return exit_code(rows)
