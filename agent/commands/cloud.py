"""The chain's cloud side: ingest the fleet's MQTT uplinks, report across stores, push config.

  shopedge cloud ingest  --config CLOUD.toml [--worker NAME]   an ingest worker (run several)
  shopedge cloud report  [--since 7d] [--store S] [--json] [--png FILE]
  shopedge cloud devices [--json]
  shopedge cloud config set STORE/DEVICE KEY=VALUE...  |  --store STORE KEY=VALUE...
  shopedge cloud config show
  shopedge cloud serve                                            the read-only HQ page

CLOUD.toml is documented key by key in cloud.example.toml (default path
$SHOPEDGE_CLOUD_CONFIG or /etc/shopedge/cloud.toml). The logic lives in `cloud/`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cloud.fleet_config import CloudConfig

DEFAULT_CLOUD_CONFIG = Path(os.environ.get("SHOPEDGE_CLOUD_CONFIG", "/etc/shopedge/cloud.toml"))


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CLOUD_CONFIG,
        metavar="CLOUD.toml",
        help=f"cloud config file (default: {DEFAULT_CLOUD_CONFIG})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cloud_command", metavar="SUBCOMMAND", required=True)
    ingest = sub.add_parser("ingest", help="run one ingest worker (broker -> fleet database)")
    _config_option(ingest)
    ingest.add_argument("--worker", metavar="NAME", help="worker name in the group (default: hostname)")
    ingest.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    report = sub.add_parser("report", help="the funnel per store and day, and fleet totals")
    _config_option(report)
    report.add_argument("--since", default="7d", help="7d, 24h, 90m or YYYY-MM-DD (default 7d)")
    report.add_argument("--store", metavar="STORE", help="only this store")
    report.add_argument("--json", action="store_true", help="print the rows as JSON")
    report.add_argument("--png", type=Path, metavar="FILE", help="also draw stores side by side to FILE")

    devices = sub.add_parser("devices", help="every device ever seen: online, versions, backlog, gaps")
    _config_option(devices)
    devices.add_argument("--json", action="store_true", help="print JSON")

    config = sub.add_parser("config", help="desired live config per device, and what devices report")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    set_ = config_sub.add_parser("set", help="publish KEY=VALUE changes on down/config (QoS 1)")
    _config_option(set_)
    set_.add_argument("--store", metavar="STORE", help="every device seen in this store")
    set_.add_argument(
        "items",
        nargs="+",
        metavar="[STORE/DEVICE] KEY=VALUE",
        help="one device (or --store), then e.g. mqtt.batch_max=100",
    )
    show = config_sub.add_parser("show", help="devices whose reported config differs from the desired")
    _config_option(show)
    show.add_argument("--all", action="store_true", help="list every desired key, also those in sync")
    show.add_argument("--json", action="store_true", help="print JSON")

    serve = sub.add_parser("serve", help="the read-only HQ page (fleet table, funnel per store)")
    _config_option(serve)
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def load_cloud_or_exit(path: Path) -> CloudConfig:
    """Load CLOUD.toml or print one line per problem and exit 2 (never a traceback)."""
    from cloud.fleet_config import CloudConfigError, load_cloud_config

    try:
        return load_cloud_config(path)
    except CloudConfigError as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args: argparse.Namespace) -> int:
    config = load_cloud_or_exit(args.config)
    command = args.cloud_command
    if command == "ingest":
        return _ingest(config, args)
    if command == "report":
        return _report(config, args)
    if command == "devices":
        return _devices(config, args)
    if command == "config":
        return _config(config, args)
    return _serve(config, args)


def _secrets(config: CloudConfig) -> list[str]:
    values = [config.mqtt.password.get_secret_value(), config.hq.token.get_secret_value()]
    url = config.cloud.database_url
    if "@" in url and ":" in url.split("@")[0].split("//")[-1]:
        values.append(url.split("@")[0].split("//")[-1].split(":", 1)[1])
    return [value for value in values if value]


def _open_engine(config: CloudConfig) -> Engine:
    from sqlalchemy.exc import SQLAlchemyError

    from cloud.fleet_db import migrate_fleet, open_fleet_engine

    engine = open_fleet_engine(config.cloud.effective_database_url)
    try:
        migrate_fleet(engine)
    except SQLAlchemyError as exc:
        where = config.cloud.effective_database_url.split("@")[-1]
        print(f"cloud: cannot open the fleet database {where}: {str(exc).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(1) from None
    return engine


def _ingest(config: CloudConfig, args: argparse.Namespace) -> int:
    import asyncio

    from agent.commands import until_signal
    from agent.logs import setup_logging
    from cloud.ingest import IngestWorker

    if not config.mqtt.enabled:
        print(
            f"config error: {args.config}: mqtt.enabled: false; the ingest worker needs the broker",
            file=sys.stderr,
        )
        return 2
    setup_logging(args.log_level, secrets=_secrets(config))
    engine = _open_engine(config)
    worker = IngestWorker(config, engine, client_id=config.cloud.client_id(args.worker))

    async def main() -> int:
        await until_signal(worker.run())
        return 0

    try:
        return asyncio.run(main())
    finally:
        engine.dispose()


def _report(config: CloudConfig, args: argparse.Namespace) -> int:
    import json
    import time

    from cloud.report import format_report, load_report_blocking, parse_since, render_fleet_chart

    now = time.time()
    try:
        since = parse_since(args.since, now=now, zone=config.report.timezone)
    except ValueError as exc:
        print(f"shopedge cloud report: {exc}", file=sys.stderr)
        return 2
    engine = _open_engine(config)
    try:
        rows = load_report_blocking(engine, since=since, now=now, config=config.report, store=args.store)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], ensure_ascii=False, indent=2))
    else:
        print(format_report(rows))
    if args.png:
        title = "連鎖門市漏斗 Fleet funnel" + (f" · {args.store}" if args.store else "")
        render_fleet_chart(rows, title=f"{title} (since {args.since})").save(args.png)
        if not args.json:
            print(f"chart written to {args.png}")
    return 0


def _devices(config: CloudConfig, args: argparse.Namespace) -> int:
    import json
    import time

    from cloud.devices import format_devices, load_devices_blocking, quarantine_count_blocking

    now = time.time()
    engine = _open_engine(config)
    try:
        rows = load_devices_blocking(engine, now=now, config=config.cloud)
        quarantined = quarantine_count_blocking(engine)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"devices": [r.as_dict() for r in rows], "quarantined": quarantined}, indent=2))
    else:
        print(format_devices(rows, now=now, quarantined=quarantined))
    return 0


def _config(config: CloudConfig, args: argparse.Namespace) -> int:
    import json
    import time

    from cloud.desired import (
        ConfigPublishError,
        drift_blocking,
        parse_assignments,
        parse_target,
        publish_config_blocking,
        set_desired_blocking,
        store_devices_blocking,
    )

    if args.config_command == "show":
        engine = _open_engine(config)
        try:
            drift = drift_blocking(engine, include_in_sync=args.all)
        finally:
            engine.dispose()
        if args.json:
            print(json.dumps([d.as_dict() for d in drift], ensure_ascii=False, indent=2))
            return 0
        if not drift:
            print("every device reports its desired config")
            return 0
        for d in drift:
            version = f" (agent {d.reported_version})" if d.reported_version else ""
            detail = f": {d.detail}" if d.state == "refused" and d.detail else ""
            print(
                f"{d.store_id}/{d.device_id} {d.key}: desired {json.dumps(d.desired)}, "
                f"reported {json.dumps(d.reported)} [{d.state}]{version}{detail}"
            )
        return 0
    changes_text = list(args.items)
    target = None
    if changes_text and "=" not in changes_text[0]:
        target = changes_text.pop(0)
    if not changes_text:
        print("shopedge cloud config set: give at least one KEY=VALUE", file=sys.stderr)
        return 2
    if (target is None) == (args.store is None):
        print("shopedge cloud config set: give either STORE/DEVICE or --store STORE", file=sys.stderr)
        return 2
    try:
        changes = parse_assignments(changes_text)
        targets = [parse_target(target)] if target is not None else None
    except ValueError as exc:
        print(f"shopedge cloud config set: {exc}", file=sys.stderr)
        return 2
    engine = _open_engine(config)
    try:
        if targets is None:
            targets = store_devices_blocking(engine, args.store)
            if not targets:
                print(f"shopedge cloud config set: no device seen in store {args.store!r}", file=sys.stderr)
                return 1
        messages = set_desired_blocking(engine, targets, changes, now=time.time())
    finally:
        engine.dispose()
    try:
        publish_config_blocking(config.mqtt, messages)
    except ConfigPublishError as exc:
        print(f"shopedge cloud config set: desired config recorded but not published: {exc}", file=sys.stderr)
        return 1
    for store, device, envelope in messages:
        print(
            f"{store}/{device}: published {json.dumps(dict(envelope.data['set']), ensure_ascii=False)} "
            f"(request {envelope.id}, QoS 1, retained)"
        )
    return 0


def _serve(config: CloudConfig, args: argparse.Namespace) -> int:
    import asyncio

    from agent.commands import until_signal
    from agent.logs import setup_logging
    from cloud.hq import serve_hq

    if not config.hq.token.get_secret_value():
        print(f"config error: {args.config}: hq.token: empty; the HQ page needs a token", file=sys.stderr)
        return 2
    setup_logging(args.log_level, secrets=_secrets(config))
    engine = _open_engine(config)

    async def main() -> int:
        try:
            await until_signal(serve_hq(config, engine))
        except OSError as exc:
            print(f"cloud serve: cannot listen on {config.hq.listen}: {exc}", file=sys.stderr)
            return 1
        return 0

    try:
        return asyncio.run(main())
    finally:
        engine.dispose()
