"""glibc malloc settings for a gateway: memory handed back after a burst instead of kept for the next one.

By default glibc gives each thread that allocates an arena of its own (up to 8 per core) and keeps freed
memory at the top of the heap below a threshold that grows with the largest block freed. After a burst of
events (a flood after an outage, a storm of readings) an agent keeps the peak for good. `tune_malloc`
caps the arenas and fixes both thresholds, so blocks of 128 KiB or more are mapped and unmapped on their
own and free memory above 128 KiB at the top of an arena goes back to the system. It acts through
`mallopt(3)` before the agent starts its threads, and does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

log = logging.getLogger("nerve.edge")

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def is_glibc() -> bool:
    """Whether this process runs on Linux with glibc (musl's mallopt accepts nothing)."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def tune_malloc(arena_max: int, threshold: int = 128 * 1024) -> bool:
    """Cap malloc at `arena_max` arenas and fix its trim and mmap thresholds at `threshold` bytes;
    True when glibc took every setting."""
    if not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = {M_ARENA_MAX: arena_max, M_TRIM_THRESHOLD: threshold, M_MMAP_THRESHOLD: threshold}
    taken = all(mallopt(param, value) == 1 for param, value in settings.items())
    if not taken:
        log.warning("malloc settings not taken by the C library", extra={"arena_max": arena_max})
    return taken
