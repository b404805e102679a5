"""glibc's malloc arenas, capped for a long-running daemon on a small Pi.

glibc gives each thread that allocates its own arena (up to 8 per core); the agent's worker
threads (SQLite, rendering, PNG encoding, LINE Pay calls) each grow one and keep its freed
megabytes, so resident memory creeps up with no leak in Python. Two arenas keep the threads from
contending on one lock and return that memory: measured by bench/footprint.py, ~15 MB less
after 400 sales. Equivalent to `MALLOC_ARENA_MAX=2`, which still wins when it is set.

Freed memory goes back to the system: every frame the display draws and encodes passes through
buffers of about 1.2 MB (the pixels, the PNG's rows), and glibc's defaults keep them. Once one
such buffer is freed, glibc raises its mmap threshold to that size (so later ones come from the
heap, between small long-lived allocations that pin them) and its trim threshold to twice it.
A fixed mmap threshold of 128 kB (glibc's starting value, no longer adapting) and a trim
threshold of 128 kB return them: 104 -> 93 MB after 2,000 sales in bench/footprint.py, for ~1 ms
more kernel time a sale (each frame's buffers are mapped and faulted in anew;
docs/performance.md). An earlier round held them on the heap for that millisecond; the memory
goal is the harder one on a 512 MB Pi that also runs kiosk Chromium.
`MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` set by the operator still win.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Final

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "limit_malloc_arenas", "return_freed_memory"]

log = logging.getLogger(__name__)

ARENA_MAX: Final = 2
MMAP_THRESHOLD: Final = 128 * 1024
TRIM_THRESHOLD: Final = 128 * 1024
_M_TRIM_THRESHOLD: Final = -1  # glibc malloc.h
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8


def limit_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc's arenas (before threads start); False where there is no glibc mallopt."""
    return _mallopt(_M_ARENA_MAX, arenas, env="MALLOC_ARENA_MAX")


def return_freed_memory() -> bool:
    """Fixed, low mmap and trim thresholds (see above); False where not applied."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    trim = _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD, env="MALLOC_TRIM_THRESHOLD_")
    return _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD, env="MALLOC_MMAP_THRESHOLD_") and trim


def _mallopt(param: int, value: int, *, env: str) -> bool:
    if env in os.environ:
        return False  # the operator chose; glibc has read it already
    try:
        # The process's own symbols, libc's among them: `ctypes.util.find_library` would cost
        # ~25 ms of every start (its import, and `ldconfig -p` in a subprocess).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(param, value))
    if not applied:
        log.warning("malloc setting not applied", extra={"setting": env, "value": value})
    return applied
