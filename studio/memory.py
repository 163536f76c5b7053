"""Give freed memory back to the system after a large photo.

Decoding a 36 MP photo takes ~110 MB, freed as soon as the working-size copy is made. glibc keeps
freed blocks of that size in the heap of the worker thread that freed them (one malloc arena per
thread, up to 8 per core), so a server that served a few large photos from different worker threads
holds hundreds of MB it does not use -- memory that grows with the number of threads that ever
decoded a photo, not with the sessions. ``malloc_trim(0)`` returns every arena's free pages.

glibc also raises its mmap threshold each time it frees a large mapped block (up to 32 MB), after
which blocks of a few MB (the working-size photo, resize buffers) come from those arenas and
fragment them: the server's memory after a preview then wandered by +-50 MB from one preview to
the next, and the load test's 40 MB bound failed 4 runs in 12. A fixed threshold
(:data:`MMAP_THRESHOLD_BYTES`, :func:`fix_mmap_threshold`) keeps such blocks mapped, so freeing
them gives them back: 396-401 MB after every preview in the same test (three runs), with no
measurable cost to a preview (the per-frame buffers stay below it).
Elsewhere than glibc (macOS, Windows, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("steadydancer.app")

#: Blocks this large or larger are mapped by themselves and returned when freed (glibc's
#: ``M_MMAP_THRESHOLD``; setting it turns off glibc's moving threshold). 1 MB was as stable but
#: cost ~3 % of a preview (its 1.7 MB frames were mapped anew each time); 4 and 16 MB were stable.
MMAP_THRESHOLD_BYTES = 16 * 2**20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        trim = _libc().malloc_trim
    except AttributeError:  # not glibc (or no libc found)
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


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` for this process (see the module docstring);
    True if it was set."""
    try:
        mallopt = _libc().mallopt
    except AttributeError:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
