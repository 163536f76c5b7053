"""Give freed memory back to the system after a large photo.

Decoding a 36 MP photo takes ~110 MB, freed as soon as the working-size copy is made. glibc keeps
freed blocks of that size in the heap of the worker thread that freed them (one malloc arena per
thread, up to 8 per core), so a server that served a few large photos from different worker threads
holds hundreds of MB it does not use -- memory that grows with the number of threads that ever
decoded a photo, not with the sessions. ``malloc_trim(0)`` returns every arena's free pages.
Elsewhere than glibc (macOS, Windows, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("steadydancer.app")


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap memory to the operating system (glibc); True if anything was released."""
    trim = _malloc_trim()
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except Exception:  # never let housekeeping break a request
        log.debug("malloc_trim failed", exc_info=True)
        return False
