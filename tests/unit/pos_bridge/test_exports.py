"""Every module of the payments capability declares `__all__`, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "pos_bridge",
    "pos_bridge.linepay",
    "pos_bridge.payment_flow",
    "pos_bridge.screens",
    "pos_bridge.journal",
    "pos_bridge.service",
    "pos_bridge.api",
    "agent.wiring.pos",
    "agent.demo.payments",
    "drivers.scanner",
    "drivers.scanner.base",
    "drivers.scanner.replay",
    "drivers.scanner.evdev_scanner",
    "emulators.linepay",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_explicit_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    for export in module.__all__:
        assert hasattr(module, export), f"{name}.__all__ names missing {export}"
    assert module.__doc__, f"{name} has no module docstring saying what it owns"


def test_importing_the_scanner_package_does_not_need_evdev() -> None:
    import sys

    importlib.import_module("drivers.scanner")
    assert "evdev" not in sys.modules
