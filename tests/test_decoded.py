"""A driving clip decoded ahead of its extraction (steadydancer.pose.decoded): the reader gets
exactly the frames the extraction would decode, waits for a decode it is ahead of, and gets from
the file whatever the decode did not deliver; the budget always ends where it started."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose import extract
from steadydancer.pose.decoded import DecodedClip, FrameBudget
from steadydancer.pose.path import PoseOptions, extract_driving
from tests.conftest import assert_same_poses

FPS, COUNT = 16.0, 12


@pytest.fixture(scope="module")
def expected(person_clip):
    return list(extract.detection_frames(person_clip, fps=FPS, max_frames=COUNT))


def assert_same(frames, expected):
    assert len(frames) == len(expected)
    for got, want in zip(frames, expected):
        np.testing.assert_array_equal(got, want)


def counted(monkeypatch, fail_after: int | None = None):
    """Count detection_frames calls; the first one raises after ``fail_after`` frames if given."""
    calls = []
    real = extract.detection_frames

    def wrapped(*args, **kwargs):
        calls.append(kwargs)
        frames = real(*args, **kwargs)
        if fail_after is None or len(calls) > 1:
            return frames

        def failing():
            for index, frame in enumerate(frames):
                if index == fail_after:
                    raise SteadyDancerInputError("the decoder failed")
                yield frame

        return failing()

    monkeypatch.setattr(extract, "detection_frames", wrapped)
    return calls


def test_the_reader_gets_the_detection_frames_once(person_clip, expected, monkeypatch):
    calls = counted(monkeypatch)
    budget = FrameBudget(2**30)
    clip = DecodedClip(person_clip, FPS, COUNT, budget)
    clip.decode()
    assert clip.ended and len(calls) == 1 and budget.used == sum(f.nbytes for f in expected)
    assert_same(list(clip.frames()), expected)
    assert len(calls) == 1 and budget.used == 0  # nothing decoded again; every byte given back
    assert clip.matches(person_clip, FPS, COUNT)
    assert not clip.matches(person_clip, FPS, COUNT + 1) and not clip.matches(person_clip, 0, COUNT)


def test_a_reader_ahead_of_the_decode_waits_for_each_frame(person_clip, expected, monkeypatch):
    calls = counted(monkeypatch)
    budget = FrameBudget(2**30)
    clip = DecodedClip(person_clip, FPS, COUNT, budget)
    got = []
    reader = threading.Thread(target=lambda: got.extend(clip.frames()))
    reader.start()  # before the decode: it waits
    reader.join(0.2)
    assert reader.is_alive() and not got
    clip.decode()
    reader.join(30)
    assert_same(got, expected)
    assert len(calls) == 1 and budget.used == 0


@pytest.mark.parametrize("case", ["budget", "stopped", "failed"])
def test_what_the_decode_did_not_deliver_comes_from_the_file(person_clip, expected, monkeypatch, case):
    """Out of budget after 3 frames, stopped after 5 (the clip was replaced), or failed after 4:
    the reader still gets every frame, the same, and the budget is given back."""
    calls = counted(monkeypatch, fail_after=4 if case == "failed" else None)
    budget = FrameBudget(int(expected[0].nbytes * 3.5) if case == "budget" else 2**30)
    clip = DecodedClip(person_clip, FPS, COUNT, budget)
    if case == "stopped":
        real_take = budget.take

        def take(nbytes):  # the decode's sixth frame: the session replaced the clip meanwhile
            if len(clip._frames) == 5:
                clip.stop()
            return real_take(nbytes)

        budget.take = take
    clip.decode()
    assert clip.ended
    assert_same(list(clip.frames()), expected)
    assert len(calls) == 2 and budget.used == 0


def test_an_unreadable_file_raises_in_the_reader(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    clip = DecodedClip(bad, FPS, COUNT, FrameBudget(2**30))
    clip.decode()  # says nothing: the reader meets the error the file gives
    with pytest.raises(SteadyDancerInputError, match="notes.mp4"):
        list(clip.frames())


def test_closing_the_reader_or_stopping_lets_the_frames_go(person_clip, expected):
    budget = FrameBudget(2**30)
    clip = DecodedClip(person_clip, FPS, COUNT, budget)
    clip.decode()
    reader = clip.frames()
    np.testing.assert_array_equal(next(reader), expected[0])
    reader.close()
    assert budget.used == 0
    other = DecodedClip(person_clip, FPS, COUNT, budget)
    other.decode()
    other.stop()
    assert budget.used == 0
    assert_same(list(other.frames()), expected)  # from the file
    assert budget.used == 0


def test_extract_driving_reads_a_matching_decode_instead_of_the_file(person_clip, monkeypatch):
    options = PoseOptions(max_frames=COUNT)
    cold = extract_driving(person_clip, options)
    calls = counted(monkeypatch)
    clip = DecodedClip(person_clip, options.fps, options.max_frames, FrameBudget(2**30))
    clip.decode()
    ahead = extract_driving(person_clip, options, decoded=clip)
    assert len(calls) == 1  # the decode above; the extraction decoded nothing
    assert_same_poses(cold.poses, ahead.poses)
    assert_same(ahead.frames.frames, cold.frames.frames)  # the preview-size frames too

    other = DecodedClip(person_clip, options.fps, COUNT - 4, FrameBudget(2**30))  # another length
    other.decode()
    extract_driving(person_clip, options, decoded=other)
    assert len(calls) == 3  # not read: the file was decoded
