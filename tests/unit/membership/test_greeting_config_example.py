"""The `[[greetings]]` block of config.example.toml, uncommented as a shop would, loads as written."""

from __future__ import annotations

import tomllib
from pathlib import Path

from agent.config import parse_config
from membership.greeting import GreetingConfig

ROOT = Path(__file__).resolve().parents[3]


def test_the_commented_greeting_example_is_the_default_greeting() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    block = text[text.index("# [[greetings]]") : text.index("[coupons]")]
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line for line in block.splitlines())
    data = tomllib.loads(text) | tomllib.loads(uncommented)
    config = parse_config(data, environ={})
    assert config.greetings == [GreetingConfig()]
    assert config.beacon.advertise is False  # off unless a shop turns it on
