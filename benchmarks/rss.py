"""Resident memory of this process, sampled from /proc (Linux), for the load-memory benchmarks."""

from __future__ import annotations

import json
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


class LoadRecording:
    """A benchmark child's load measurement: the RssAnon / RssFile baseline when made (after the
    imports), then the peaks sampled on a thread until :meth:`report`, which prints the one JSON
    line the parent reads (``baseline``, ``peaks``, ``model_bytes``, ``seconds``, ``checksum``)."""

    def __init__(self):
        with open("/proc/self/status") as status:
            self.baseline = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status
                             if line.startswith(("RssAnon:", "RssFile:"))}
        self.peaks: dict = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=sample_rss, args=(self._stop, self.peaks), daemon=True)
        self._sampler.start()

    def report(self, model, seconds: float, checksum: float) -> None:
        time.sleep(0.05)  # one more sample after the last weight was read
        self._stop.set()
        self._sampler.join()
        model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        print(json.dumps({"baseline": self.baseline, "peaks": self.peaks, "model_bytes": model_bytes,
                          "seconds": seconds, "checksum": checksum}))
