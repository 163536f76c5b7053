"""The one workflow (steadydancer.generation): the length and the size are decided once, the
conditions are rendered on the official canvas, passed through the official compression chain or not
(``conditioning``), and handed over at the photo's own size as the official generator does (the
pipeline resizes them to the size it generates)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from steadydancer.constants import DEFAULT_MAX_AREA, MODEL_FPS, size_for_area
from steadydancer.generation import audio_source, generation_size, output_fps, prepare_job
from steadydancer.pose.align import AlignmentInfo
from steadydancer.pose.conditioning import handover_size
from steadydancer.pose.path import AlignedPoses, CleanedPoses, DrivingPoses, PoseOptions, PosePathResult, ReferencePose
from steadydancer.pose.render import official_canvas_size
from steadydancer.pose.repair import RepairReport
from steadydancer.pose.sequence import PoseFrame, PoseSequence
from steadydancer.pose.skeleton import BODY

from conftest import STANDING

#: Image sides and aspect ratios a user may bring (portrait, landscape, square, odd, tiny, huge).
SIZES = [(300, 311), (400, 582), (864, 1184), (1080, 1920), (1920, 1080), (1000, 1000), (2000, 700),
         (333, 1000), (1283, 1709), (517, 389), (4000, 3000), (720, 1280)]


def _poses(image_size, frames=5, options=None) -> PosePathResult:
    w, h = image_size
    body = np.array([STANDING[name] for name in sorted(BODY, key=BODY.get)], dtype=np.float64)
    body[:, 0] = 0.5 + (body[:, 0] - 0.5) * h / w  # height units -> normalised to this aspect
    empty = PoseFrame.empty()
    frame = PoseFrame(body=np.concatenate([body, np.full((len(body), 1), 0.9)], 1), hands=empty.hands,
                      face=empty.face)
    seq = PoseSequence.from_frames([frame] * frames, fps=16.0, width=w, height=h)
    image = Image.new("RGB", image_size, (90, 120, 150))
    reference = ReferencePose(image=image, size=size_for_area(w, h, DEFAULT_MAX_AREA), pose=frame)
    info = AlignmentInfo(scales={}, offset=(0.0, 0.0), alignment_frames=[0], mode="official")
    aligned = AlignedPoses(positive=seq, negative=seq, info=info)
    options = options or PoseOptions()
    return PosePathResult(reference, DrivingPoses(poses=seq), CleanedPoses(poses=seq, report=RepairReport(events=[])),
                          aligned, options)


@pytest.mark.parametrize("max_area", [832 * 480, DEFAULT_MAX_AREA])
def test_clean_conditions_come_at_the_photo_size_from_the_official_canvas(max_area, monkeypatch):
    import steadydancer.pose.render as render

    canvases = []
    original = render.render_pose
    monkeypatch.setattr(render, "render_pose", lambda frame, w, h, **kw: canvases.append((w, h)) or original(
        frame, w, h, **kw))
    for size in SIZES:
        canvases.clear()
        job = prepare_job(_poses(size, frames=6, options=PoseOptions(conditioning="clean")), max_area=max_area)
        # The size the pipeline generates for this photo (its own rule, on the photo's own pixels).
        width, height = size_for_area(size[0], size[1], max_area)
        assert (job.width, job.height) == (width, height) == generation_size(size, max_area)
        assert job.num_frames == 5  # 6 frames -> 4n+1, decided once
        assert len(job.positive) == len(job.negative) == 5
        # Handed over at the photo's size (the official generator's first resize), or at the canvas
        # size for a photo larger than the canvas (the pipeline then makes the same resize).
        hand_w, hand_h = handover_size(SimpleNamespace(image=SimpleNamespace(size=size)))
        big = size[0] * size[1] > official_canvas_size(*size)[0] * official_canvas_size(*size)[1]
        assert (hand_w, hand_h) == (official_canvas_size(*size) if big else size), size
        assert all(f.shape == (hand_h, hand_w, 3) for f in job.positive + job.negative), size
        # The official canvas: twice the official working size of the photo itself.
        official = size_for_area(size[0], size[1], DEFAULT_MAX_AREA)
        assert set(canvases) == {(2 * official[0], 2 * official[1])} == {official_canvas_size(*size)}, size


def test_official_conditions_come_at_the_photo_size_from_the_official_canvas(monkeypatch):
    import steadydancer.pose.render as render

    canvases = []
    original = render.render_pose
    monkeypatch.setattr(render, "render_pose", lambda frame, w, h, **kw: canvases.append((w, h)) or original(
        frame, w, h, **kw))
    assert PoseOptions().conditioning == "official"
    for size in [(400, 582), (864, 1184), (1920, 1080)]:
        canvases.clear()
        job = prepare_job(_poses(size, frames=6), max_area=832 * 480)
        assert (job.width, job.height) == generation_size(size, 832 * 480) and job.num_frames == 5
        assert len(job.positive) == len(job.negative) == 5
        # As the official generator: the pose frames at the photo's own size (the pipeline resizes them).
        assert all(f.shape == (size[1], size[0], 3) for f in job.positive + job.negative), size
        assert set(canvases) == {official_canvas_size(*size)}, size


def test_the_canvas_is_not_rounded_twice():
    # 400x582: working size 624x912; rounding that again would give 624x928 (canvas 1248x1856).
    assert official_canvas_size(400, 582) == (1248, 1824)


def test_length_rate_and_audio_rules():
    poses = _poses((400, 600), frames=30)
    assert prepare_job(poses, max_area=64 * 64, num_frames=81).num_frames == 29  # clipped, then 4n+1
    assert prepare_job(poses, max_area=64 * 64, num_frames=9).num_frames == 9
    assert output_fps(PoseOptions()) == MODEL_FPS and output_fps(PoseOptions(fps=24)) == 24
    assert output_fps(PoseOptions(fps=0)) == MODEL_FPS  # every source frame, played at the model's rate
    poses.driving.video = "clip.mp4"
    assert audio_source(poses) == "clip.mp4"
    assert audio_source(_poses((400, 600), options=PoseOptions(fps=0))) is None  # slowed down: no sound
    lead = _poses((400, 600))
    lead.driving.video, lead.aligned.lead_in_frames = "clip.mp4", 4
    assert audio_source(lead) is None  # the video does not start with the clip
