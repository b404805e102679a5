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
    code = "from agent.malloc import keep_frame_buffers; print(keep_frame_buffers())"
    assert _fresh_process(code) == "True"


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_operator_thresholds_win(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "131072")
    assert malloc.keep_frame_buffers() is False


def test_operator_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert malloc.limit_malloc_arenas() is False


def test_no_mallopt_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)

    def no_libc(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: not here")

    monkeypatch.setattr(malloc.ctypes, "CDLL", no_libc)
    assert malloc.limit_malloc_arenas() is False


FAULTS = """
import resource, sys, threading
from agent.malloc import keep_frame_buffers, limit_malloc_arenas
limit_malloc_arenas()
if sys.argv[1] == "tuned":
    assert keep_frame_buffers()

def draw():  # as the daemon does: in a worker thread, so in a thread's arena
    frame = b"x" * 1_200_000
    del frame
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        pixels = b"x" * 1_200_000  # a frame's pixels, written
        rows = pixels + b"y"  # and its PNG rows
        del pixels, rows
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

worker = threading.Thread(target=draw)
worker.start()
worker.join()
"""


def _faults(mode: str) -> int:
    return int(_fresh_process(FAULTS, mode))


def test_a_frame_sized_buffer_reuses_its_pages_instead_of_faulting_them_in_anew() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    assert default > 50 * 200  # ~293 pages a buffer: mmap'ed and faulted in every time
    assert tuned < 500
