"""Shared fixtures: a minimal valid config, and the option that enables hardware tests."""

from __future__ import annotations

from pathlib import Path

import pytest

MINIMAL_CONFIG = """
[device]
store_id = "store-001"
device_id = "counter-1"

[storage]
state_dir = "state"
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hw", action="store_true", help="run tests that need real hardware")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hw"):
        return
    skip = pytest.mark.skip(reason="needs real hardware (run with --hw)")
    for item in items:
        if "hw" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL_CONFIG, encoding="utf-8")
    return path
