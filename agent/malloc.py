"""glibc's malloc arenas, capped for a long-running daemon on a small Pi.

glibc gives each thread that allocates its own arena (up to 8 per core); the agent's worker
threads (SQLite, rendering, PNG encoding, LINE Pay calls) each grow one and keep its freed
megabytes, so resident memory creeps up with no leak in Python. Two arenas keep the threads from
contending on one lock and return that memory: measured by bench/footprint.py, ~15 MB less
after 400 sales. Equivalent to `MALLOC_ARENA_MAX=2`, which still wins when it is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Final

__all__ = ["ARENA_MAX", "limit_malloc_arenas"]

log = logging.getLogger(__name__)

ARENA_MAX: Final = 2
_M_ARENA_MAX: Final = -8  # glibc malloc.h


def limit_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc's arenas (before threads start); False where there is no glibc mallopt."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False  # the operator chose; glibc has read it already
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_ARENA_MAX, arenas))
    if not applied:
        log.warning("malloc arena limit not applied", extra={"arenas": arenas})
    return applied
