"""The pose path end to end: the command line on a clip with a real person, stage reuse, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, make_person_frames, write_clip
from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose.path import (
    OUTPUT_FILES, PoseOptions, align_driving, clean_driving, extract_driving, prepare_reference,
    render_conditions, run_pose_path,
)
from steadydancer.pose.sequence import PoseSequence, present
from steadydancer.video import probe_video, read_video


def run_cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "-m", "steadydancer", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pose_result(person_clip, astronaut_path):
    return run_pose_path(astronaut_path, person_clip, PoseOptions(lead_in_frames=4, seed=3))


def test_cli_pose_writes_every_output(person_clip, astronaut_path, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("pose", "--image", astronaut_path, "--video", person_clip, "--out", out, "--seed", 7)
    assert proc.returncode == 0, proc.stderr
    for name in OUTPUT_FILES.values():
        assert (out / name).stat().st_size > 0, name
    poses = PoseSequence.load(out / "poses.json")
    assert len(poses) == 24 and poses.fps == 16 and (poses.width, poses.height) == (320, 384)
    assert poses.frames_with_person().all()
    aligned = PoseSequence.load(out / "aligned_poses.json")
    # auto: the official result is sound here (the groups the portrait cannot measure -- arms, torso,
    # legs -- are set to 1, which is not a failure by itself), so it is kept.
    assert len(aligned) == 24 and aligned.meta["alignment"]["mode"] == "official"
    assert aligned.meta["alignment"]["notes"][0].startswith("auto: the official alignment's result is sound")
    positive = probe_video(out / "aligned_pose.mp4", count_frames=True)
    negative = read_video(out / "negative_pose.mp4", fps=0)
    # The conditions are drawn on the character's aspect (512x512 -> 768x768 working size).
    assert (positive.width, positive.height) == (768, 768) and positive.num_frames == 24
    assert positive.codec == "h264"
    preview = probe_video(out / "preview.mp4")
    assert preview.width > 2 * preview.height  # three panels side by side
    assert len(negative) == 24


def test_stages_can_be_rerun_without_the_detector(pose_result):
    """Smoothing and alignment controls re-run only the cheap stages, from the cached extraction."""
    res = pose_result
    opts = PoseOptions(smooth=0.0, align_mode="official", lead_in_frames=0, seed=3)
    cleaned = clean_driving(res.driving, opts)
    aligned = align_driving(res.reference, cleaned, opts)
    assert len(aligned.positive) == len(res.driving.poses) == 24
    assert aligned.info.mode == "official"
    # Lead-in: 4 extra frames, starting at the character's own pose.
    assert len(res.aligned.positive) == 28
    ref = res.reference.pose.body
    first = res.aligned.positive.body[0]
    both = present(ref) & present(first)
    np.testing.assert_allclose(first[both, :2], ref[both, :2], atol=1e-5)
    # The negative condition differs from the positive, frame by frame, and is seeded.
    assert not np.allclose(np.nan_to_num(res.aligned.negative.body), np.nan_to_num(res.aligned.positive.body))
    again = align_driving(res.reference, res.cleaned, res.options)
    np.testing.assert_array_equal(again.negative.body, res.aligned.negative.body)


def test_the_aligned_neck_lands_on_the_characters_neck(pose_result):
    res = pose_result
    info = res.aligned.info
    frame = info.alignment_frames[0] + res.aligned.lead_in_frames
    neck = 1
    np.testing.assert_allclose(res.aligned.positive.body[frame, neck, :2], res.reference.pose.body[neck, :2], atol=0.02)


def test_conditions_have_the_working_size(pose_result):
    pos, neg = render_conditions(pose_result.reference, pose_result.aligned, size=(256, 256))
    assert len(pos) == len(neg) == 28 and pos[0].shape == (256, 256, 3) and pos[0].dtype == np.uint8
    assert pos[10].max() > 0


def test_saved_poses_drive_the_path_like_the_video(pose_result, tmp_path):
    path = pose_result.driving.poses.save(tmp_path / "poses.json")
    loaded = extract_driving(path, pose_result.options)
    assert loaded.video is None
    np.testing.assert_array_equal(loaded.poses.body, pose_result.driving.poses.body)
    cleaned = clean_driving(loaded, pose_result.options)
    aligned = align_driving(pose_result.reference, cleaned, pose_result.options)
    np.testing.assert_allclose(aligned.positive.body, pose_result.aligned.positive.body, equal_nan=True)


def test_saved_poses_are_resampled_to_the_requested_rate(pose_result):
    seq = pose_result.driving.poses.replace(fps=32.0)  # pretend it was a 32 fps clip
    resampled = extract_driving(seq, PoseOptions(fps=16)).poses
    assert resampled.fps == 16 and len(resampled) == 12
    np.testing.assert_array_equal(resampled.body[1], seq.body[2])
    capped = extract_driving(seq, PoseOptions(fps=0, max_frames=5)).poses
    assert len(capped) == 5 and capped.fps == 32


def test_reference_without_a_person_is_a_clear_error(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (512, 512), (120, 140, 160)).save(blank)
    with pytest.raises(SteadyDancerInputError, match="(?i)no person"):
        prepare_reference(blank)


def test_the_character_is_detected_while_the_clip_is_extracted(pose_result, person_clip, astronaut_path):
    """run_pose_path detects the character beside the extraction: same result as one after the other."""
    reference = prepare_reference(astronaut_path)
    for part in ("body", "hands", "face"):
        np.testing.assert_array_equal(getattr(pose_result.reference.pose, part), getattr(reference.pose, part))
    driving = extract_driving(person_clip, PoseOptions())
    np.testing.assert_array_equal(pose_result.driving.poses.body, driving.poses.body)


def test_a_photo_without_a_person_stops_the_extraction_early(tmp_path):
    """The character's error is raised as soon as it is known, not after the whole clip."""
    blank = tmp_path / "blank.png"
    Image.new("RGB", (512, 512), (120, 140, 160)).save(blank)
    clip = write_clip(tmp_path / "long.mp4", make_person_frames(160), fps=16)
    fractions = []
    with pytest.raises(SteadyDancerInputError, match="(?i)no person found in the character image"):
        run_pose_path(blank, clip, PoseOptions(), progress=lambda f, m: fractions.append(f))
    assert max(fractions) < 0.5, "the extraction ran on after the photo was found to have no person"


def test_of_two_bad_inputs_the_photo_is_reported(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (512, 512), (120, 140, 160)).save(blank)
    empty = write_clip(tmp_path / "empty.mp4", [np.full((384, 320, 3), 120, np.uint8)] * 24, fps=16)
    with pytest.raises(SteadyDancerInputError, match="(?i)character image"):
        run_pose_path(blank, empty, PoseOptions())


@pytest.mark.parametrize("case", ["text_as_mp4", "empty_file", "no_person", "one_frame", "missing"])
def test_cli_errors_are_one_clear_line(case, tmp_path, astronaut_path):
    video = tmp_path / "drive.mp4"
    if case == "text_as_mp4":
        video.write_text("this is not a video\n" * 20)
    elif case == "empty_file":
        video.write_bytes(b"")
    elif case == "no_person":
        write_clip(video, [np.full((96, 96, 3), 90 + i, np.uint8) for i in range(12)], fps=16)
    elif case == "one_frame":
        write_clip(video, make_person_frames(1), fps=16)
    proc = run_cli("pose", "--image", astronaut_path, "--video", video, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and len(last) > 30
    if case == "no_person":
        assert "no person" in last.lower()


def test_cli_reports_a_missing_person_in_the_image(tmp_path, person_clip):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 600), (30, 30, 30)).save(blank)
    proc = run_cli("pose", "--image", blank, "--video", person_clip, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "no person" in proc.stderr.lower()
    assert not (tmp_path / "out" / "poses.json").exists()
