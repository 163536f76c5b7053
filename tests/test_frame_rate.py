"""Frame rate: real time (the clip resampled to 16 fps, the default) or official (every native
frame kept, the video played at 16 fps: slow motion for faster clips)."""

from __future__ import annotations

import pytest

from conftest import make_person_frames, write_clip
from steadydancer.errors import SteadyDancerInputError
from steadydancer.generation import frame_rate_note, output_fps
from steadydancer.pose.path import PoseOptions, extract_driving
from steadydancer.settings import FRAME_RATE
from steadydancer.pose.sequence import PoseSequence


def note(options: PoseOptions, read_fps: float) -> str:
    from types import SimpleNamespace

    return frame_rate_note(SimpleNamespace(options=options, driving=SimpleNamespace(poses=SimpleNamespace(fps=read_fps))))


def test_modes_and_output_rate():
    assert FRAME_RATE.choices.keys() == {"realtime", "official"} and PoseOptions().frame_rate == "realtime"
    realtime, official = PoseOptions(), PoseOptions(frame_rate="official")
    assert (realtime.fps, output_fps(realtime)) == (16, 16)
    assert (official.fps, output_fps(official)) == (0, 16)  # every native frame, played at 16 fps
    assert note(official, 30) == ("Frame rate: official -- every native frame of the 30 fps clip, played at 16 fps "
                                  "(0.53x speed, slow motion).")
    assert note(realtime, 16) == "Frame rate: real time -- the motion resampled to 16 fps (1.00x speed)."
    with pytest.raises(SteadyDancerInputError, match="frame_rate"):
        PoseOptions(frame_rate="native")


def test_official_keeps_every_native_frame_of_a_30_fps_clip(tmp_path):
    clip = write_clip(tmp_path / "clip30.mp4", make_person_frames(24), fps=30)
    realtime = extract_driving(clip, PoseOptions()).poses
    official = extract_driving(clip, PoseOptions(frame_rate="official")).poses
    assert (len(official), official.fps) == (24, pytest.approx(30))
    assert (len(realtime), realtime.fps) == (13, 16)  # 0.8 s at 16 fps: t = k / 16 < 0.8


def test_saved_poses_follow_the_same_rule():
    seq = PoseSequence.empty(30, 30.0, 64, 64)
    seq.body[:, :, :] = 0.5  # a (degenerate) person in every frame
    assert len(extract_driving(seq, PoseOptions(frame_rate="official")).poses) == 30
    assert len(extract_driving(seq, PoseOptions()).poses) == 16
