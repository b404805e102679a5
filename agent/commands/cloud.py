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
    set_.add_argument("target", nargs="?", metavar="STORE/DEVICE", help="one device")
    set_.add_argument("--store", metavar="STORE", help="every device seen in this store")
    set_.add_argument("changes", nargs="+", metavar="KEY=VALUE", help="e.g. mqtt.batch_max=100")
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


def _open_engine(config: CloudConfig):  # type: ignore[no-untyped-def]
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
    import signal

    from agent.logs import setup_logging
    from cloud.ingest import IngestWorker

    setup_logging(args.log_level, secrets=_secrets(config))
    engine = _open_engine(config)
    worker = IngestWorker(config, engine, client_id=config.cloud.client_id(args.worker))

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await worker.run()
        except asyncio.CancelledError:
            return 0
        return 0

    try:
        return asyncio.run(main())
    finally:
        engine.dispose()


def _report(config: CloudConfig, args: argparse.Namespace) -> int:
    print("shopedge cloud report: not built yet", file=sys.stderr)
    return 2


def _devices(config: CloudConfig, args: argparse.Namespace) -> int:
    print("shopedge cloud devices: not built yet", file=sys.stderr)
    return 2


def _config(config: CloudConfig, args: argparse.Namespace) -> int:
    print("shopedge cloud config: not built yet", file=sys.stderr)
    return 2


def _serve(config: CloudConfig, args: argparse.Namespace) -> int:
    print("shopedge cloud serve: not built yet", file=sys.stderr)
    return 2
