"""The malloc arena cap: applied on glibc, a no-op (never an error) elsewhere or when set."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from agent import malloc

ROOT = Path(__file__).resolve().parents[2]


def _fresh_process(code: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return out.stdout.strip()


def test_applied_on_glibc_in_a_fresh_process() -> None:
    code = "from agent.malloc import limit_malloc_arenas; print(limit_malloc_arenas())"
    assert _fresh_process(code) == "True"


def test_frame_buffers_kept_on_glibc_in_a_fresh_process() -> None:
    code = "from agent.malloc import return_freed_memory; print(return_freed_memory())"
    assert _fresh_process(code) == "True"


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_operator_thresholds_win(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "131072")
    assert malloc.return_freed_memory() is False


def test_operator_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert malloc.limit_malloc_arenas() is False


def test_no_mallopt_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)

    def no_libc(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: not here")

    monkeypatch.setattr(malloc.ctypes, "CDLL", no_libc)
    assert malloc.limit_malloc_arenas() is False


RETAINED = """
import sys, threading
from agent.malloc import return_freed_memory, limit_malloc_arenas
limit_malloc_arenas()
if sys.argv[1] == "tuned":
    assert return_freed_memory()

def anon_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))

def draw():  # as the daemon does: in a worker thread, so in a thread's arena
    first = bytearray(1_200_000)  # one frame freed: glibc's default raises its mmap threshold
    del first
    before = anon_kb()
    frames, kept = [], []
    for _ in range(20):
        frames.append(bytearray(1_200_000))  # a frame's pixels, written
        kept.append(bytes(600))  # and a small allocation after it that lives on (a log record)
    del frames
    print(anon_kb() - before)

worker = threading.Thread(target=draw)
worker.start()
worker.join()
"""


def _retained_kb(mode: str) -> int:
    return int(_fresh_process(RETAINED, mode))


def test_freed_frame_buffers_go_back_to_the_system_even_when_small_allocations_follow_them() -> None:
    default, tuned = _retained_kb("default"), _retained_kb("tuned")
    assert default > 15 * 1172  # ~20 frames of 1.2 MB held by glibc after they were freed
    assert tuned < 2 * 1172
