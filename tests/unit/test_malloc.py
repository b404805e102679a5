"""The malloc arena cap: applied on glibc, a no-op (never an error) elsewhere or when set."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from agent import malloc

ROOT = Path(__file__).resolve().parents[2]


def test_applied_on_glibc_in_a_fresh_process() -> None:
    code = "from agent.malloc import limit_malloc_arenas; print(limit_malloc_arenas())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "True"


def test_operator_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert malloc.limit_malloc_arenas() is False


def test_no_mallopt_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)

    def no_libc(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: not here")

    monkeypatch.setattr(malloc.ctypes, "CDLL", no_libc)
    assert malloc.limit_malloc_arenas() is False
