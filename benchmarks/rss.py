"""Resident memory of this process, sampled from /proc (Linux), for the load-memory benchmarks."""

from __future__ import annotations

import threading
import time


def sample_rss(stop: threading.Event, peaks: dict) -> None:
    """Until ``stop`` is set: the largest RssAnon / RssFile seen, in bytes, into ``peaks``."""
    while not stop.is_set():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("RssAnon:", "RssFile:")):
                    key, value = line.split(":")
                    peaks[key] = max(peaks.get(key, 0), int(value.split()[0]) * 1024)
        time.sleep(0.005)
