"""Payment screens become the display contract's classes when the display package is present."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from pos_bridge.screens import PaidScreen, PayScreen, as_contract_screen


def test_without_the_display_package_the_screen_is_passed_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "drivers.display.screens", None)  # import raises ImportError
    screen = PaidScreen(amount_twd=10, binding_url=None)
    assert as_contract_screen(screen) is screen


def test_contract_class_of_the_same_name_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass(frozen=True)
    class ContractPayScreen:
        amount_twd: int
        qr_url: str
        access_token: str | None
        expires_at: float

    module = types.ModuleType("drivers.display.screens")
    module.PayScreen = ContractPayScreen  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "drivers.display.screens", module)
    converted = as_contract_screen(
        PayScreen(amount_twd=5, qr_url="u", access_token="123456789012", expires_at=1.0)
    )
    assert converted == ContractPayScreen(5, "u", "123456789012", 1.0)
    paid = PaidScreen(amount_twd=5, binding_url="b")  # no contract class of that name: unchanged
    assert as_contract_screen(paid) is paid
