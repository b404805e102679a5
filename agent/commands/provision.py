"""Set this device up: config (0640) and secrets (0600) files, the state directory, the device
identity and binding key, then a live check of each credential and a summary.

Interactive by default on a terminal (Enter keeps the value shown in brackets); with
`--non-interactive`, answers come from `--from FILE` (a TOML file shaped like the config),
the named options and `--set section.key=value`, later ones winning. Re-running is safe:
unanswered keys and generated secrets are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.cli import DEFAULT_CONFIG

NAMED = {
    "store_id": "device.store_id",
    "device_id": "device.device_id",
    "state_dir": "storage.state_dir",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=DEFAULT_CONFIG.parent,
        metavar="DIR",
        help=f"where config.toml and secrets.toml go (default: {DEFAULT_CONFIG.parent})",
    )
    parser.add_argument("--non-interactive", action="store_true", help="never ask; use the given answers")
    parser.add_argument("--from", dest="answers_file", type=Path, metavar="FILE", help="answers as TOML")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one answer, e.g. --set linepay.channel_id=1234567890 (repeatable); pass secrets in "
        "--from FILE instead: a command line is visible to other users",
    )
    parser.add_argument("--store-id", help="device.store_id")
    parser.add_argument("--device-id", help="device.device_id")
    parser.add_argument("--state-dir", help="storage.state_dir")
    parser.add_argument(
        "--owner", help="service user owning the secrets and state (default: shopedge, if it exists)"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the live credential checks")


def run(args: argparse.Namespace) -> int:
    from agent.provisioning import ProvisionError

    try:
        return _run(args)
    except ProvisionError as exc:
        for line in exc.problems:
            print(f"provision: {line}", file=sys.stderr)
        return 2


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, body in data.items():
        if isinstance(body, dict):
            for name, value in body.items():
                out[f"{section}.{name}"] = value
    return out


def _answers(args: argparse.Namespace) -> dict[str, Any]:
    from agent.ops_files import read_toml
    from agent.provisioning import ProvisionError, coerce

    answers: dict[str, Any] = {}
    if args.answers_file is not None:
        answers.update(_flatten(read_toml(args.answers_file, "answers file (--from)")))
    for attr, key in NAMED.items():
        value = getattr(args, attr)
        if value is not None:
            answers[key] = coerce(key, value)
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ProvisionError([f"--set {item!r}: expected section.key=value"])
        answers[key.strip()] = coerce(key.strip(), value)
    return answers


# Which answers feed each live check, so a failing check re-asks only those.
CREDENTIAL_KEYS: dict[str, tuple[str, ...]] = {
    "linepay": ("linepay.mode", "linepay.api_base", "linepay.channel_id", "linepay.channel_secret"),
    "line_token": ("line.api_base", "line.channel_access_token"),
    "broker": ("mqtt.host", "mqtt.port", "mqtt.username", "mqtt.password"),
}
MAX_RETRIES = 3


def _plan(existing: dict[str, Any], answers: dict[str, Any], interactive: bool) -> Any:
    """The plan, re-asking (interactively) just the questions whose answers are invalid."""
    from agent import provisioning as core

    while True:
        try:
            return core.plan(existing, answers)
        except core.ProvisionError as exc:
            if not interactive:
                raise
            for line in exc.problems:
                print(f"  ! {line}")
            bad = [q for q in core.QUESTIONS if core.problems_for(q.key, exc.problems)]
            if not bad:
                raise
            answers = _ask(existing, answers, only=bad)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from agent import provisioning as core
    from agent.config import load_config
    from agent.doctor import Status, exit_code, render_table, run_checks
    from agent.ops_files import read_existing, setup_state, write_files

    config_path = args.config_dir / "config.toml"
    existing = read_existing(config_path)
    answers = _answers(args)
    interactive = not args.non_interactive and sys.stdin.isatty()
    if interactive:
        answers = _ask(existing, answers)
    attempt = 0
    while True:
        result = _plan(existing, answers, interactive)
        owner = write_files(args.config_dir, result, owner=args.owner)
        config = load_config(config_path)
        identity, created = setup_state(config, owner=owner)
        print(f"config:   {config_path} (0640)")
        print(f"secrets:  {args.config_dir / core.SECRETS_NAME} (0600)")
        print(f"state:    {config.storage.state_dir}")
        print(f"identity: {identity}{' (new)' if created else ' (kept)'}")
        print(f"store/device: {config.device.store_id}/{config.device.device_id}")
        if result.generated:
            print(f"generated: {', '.join(result.generated)} (in the secrets file)")
        if result.changed:
            print(f"changed:  {', '.join(result.changed)}")
        if args.no_check:
            print("live checks skipped (--no-check); run `shopedge doctor` when online")
            return 0
        rows = asyncio.run(run_checks(config, only=("state_dir", "clock", *CREDENTIAL_KEYS)))
        print(render_table(rows))
        failing = [row.check for row in rows if row.status is Status.FAIL and row.check in CREDENTIAL_KEYS]
        if not interactive or not failing or attempt == MAX_RETRIES:
            return exit_code(rows)
        print(f"Re-enter the answers for {', '.join(failing)}? [Y/n]: ", end="", flush=True)
        if sys.stdin.readline().strip().lower() in {"n", "no"}:
            return exit_code(rows)
        # What was written is now the current state; only the failing checks' answers are asked.
        existing = read_existing(config_path)
        keys = {key for check in failing for key in CREDENTIAL_KEYS[check]}
        answers = _ask(existing, {}, only=[q for q in core.QUESTIONS if q.key in keys])
        attempt += 1


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _ask(existing: dict[str, Any], answers: dict[str, Any], only: Any = None) -> dict[str, Any]:
    """Ask each question (or only the ones given); Enter keeps the current or default value."""
    import getpass

    from agent import provisioning as core

    out = dict(answers)
    for question in only or core.QUESTIONS:
        current = out.get(question.key, core.current_value(existing, question.key))
        default = _show(current) if current not in (None, "", []) else question.default
        if question.secret:
            shown = " [keep current]" if current else (" [empty]" if question.optional else "")
            raw = getpass.getpass(f"{question.text}{shown}: ")
        else:
            shown = f" [{default}]" if default else (" [empty]" if question.optional else "")
            print(f"{question.text}{shown}: ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                raise core.ProvisionError(["input closed before every question was answered"])
            raw = line.rstrip("\n")
        raw = raw.strip()
        if raw:
            out[question.key] = core.coerce(question.key, raw)
        elif question.key not in out and default and not question.secret:
            out[question.key] = core.coerce(question.key, default)
    return out
