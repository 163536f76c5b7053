"""Pose extraction stops when its caller does: a progress callback that raises (the app's Cancel, a
client that disconnected) stops the detector threads, also for frames already queued to them."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import make_person_frames


class Stop(Exception):
    pass


def test_a_raising_progress_callback_stops_the_detector_threads():
    from steadydancer.pose.extract import extract_sequence

    frames = make_person_frames(96, (320, 384))  # all of them fit in the workers' queues
    calls = []

    def progress(fraction, message):
        calls.append(fraction)
        if len(calls) >= 3:
            raise Stop()

    started = time.monotonic()
    with pytest.raises(Stop):
        extract_sequence(frames, fps=16.0, width=320, height=384, num_frames=len(frames), progress=progress,
                         workers=2)
    deadline = time.monotonic() + 2.0
    while any(t.name == "pose-detector" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name == "pose-detector" for t in threading.enumerate()), "detector threads kept running"
    assert time.monotonic() - started < 10
