"""Not built yet: arrives with issue #8 (friend conversion)."""

from __future__ import annotations

import argparse

from agent.commands import not_built


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_built("relay", "issue #8 (friend conversion)")
