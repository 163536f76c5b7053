"""The official pose-conditioning chain (steadydancer.pose.conditioning): H.264 round trip as the
official pose video writer, JPEG round trip as the official frame dump, PIL resize to the
reference photo's size; and the clean render kept as an option."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose import conditioning as cond
from steadydancer.pose.path import PoseOptions, render_conditions
from steadydancer.pose.render import BODY_COLORS
from steadydancer.video import ffmpeg_exe


def limb_frames(n: int = 5, size=(96, 64)) -> list[np.ndarray]:
    """Black frames with thick, saturated, moving strokes (like dimmed limbs) and thin lines."""
    w, h = size
    frames = []
    for t in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        c1 = tuple(int(v * 0.6) for v in BODY_COLORS[1])
        c2 = tuple(int(v * 0.6) for v in BODY_COLORS[9])
        cv2.line(img, (10 + 2 * t, 10), (60 + 2 * t, 40), c1, 8)
        cv2.line(img, (70, 5 + t), (90, 55 - t), c2, 6)
        cv2.line(img, (5, 60), (90, 58 - t), (0, 0, 255), 2)
        frames.append(img)
    return frames


def saturation(pixels: np.ndarray) -> float:
    p = pixels.astype(np.float64)
    mx, mn = p.max(axis=-1), p.min(axis=-1)
    return float(np.mean(np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-9), 0.0)))


def test_jpeg_roundtrip_is_the_official_cv2_imwrite_then_pil_open(tmp_path):
    frame = limb_frames(1)[0]
    path = tmp_path / "0000.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # the official frame dump
    official = np.asarray(Image.open(path).convert("RGB"))  # the official generator's read
    np.testing.assert_array_equal(cond.jpeg_roundtrip(frame), official)
    assert not np.array_equal(official, frame)  # lossy: the step is not a no-op


def test_h264_roundtrip_keeps_every_frame_and_loses_like_the_official_writer():
    frames = limb_frames(7)
    out = list(cond.h264_roundtrip(iter(frames), fps=30))
    assert len(out) == len(frames) and all(o.shape == frames[0].shape and o.dtype == np.uint8 for o in out)
    diff = np.abs(np.stack(out).astype(int) - np.stack(frames).astype(int))
    assert 0.3 < diff.mean() < 15  # lossy, but the same picture
    lit = np.stack(frames).max(axis=-1) > 0
    # yuv420p halves the colour resolution: thin saturated strokes lose saturation.
    assert saturation(np.stack(out)[lit]) < saturation(np.stack(frames)[lit]) - 0.03
    with pytest.raises(ValueError):
        list(cond.h264_roundtrip([np.zeros((63, 96, 3), np.uint8)], 16))
    assert list(cond.h264_roundtrip([], 16)) == []


def test_official_writer_settings(tmp_path):
    """The encoder command is moviepy's write_videofile(codec='libx264'): H.264 High, yuv420p at
    the given rate, x264 preset medium with its default CRF 23."""
    path = tmp_path / "pose.mp4"
    frames = limb_frames(3)
    assert cond._encode(frames[0], iter(frames[1:]), (96, 64), 30.0, path) == 3
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True).stderr.decode()
    assert "h264" in info and "yuv420p" in info and "30 fps" in info and "96x64" in info
    # x264 writes its settings into the stream.
    data = path.read_bytes()
    assert b"crf=23.0" in data and b"subme=7" in data and b"ref=3" in data  # preset medium


def test_official_chain_ends_at_the_reference_size_with_pil_bicubic():
    frames = limb_frames(5, size=(96, 64))
    out = list(cond.official_chain(frames, 16, (150, 100)))
    assert len(out) == 5 and out[0].shape == (100, 150, 3)
    # Step by step, the same pixels.
    decoded = list(cond.h264_roundtrip(frames, 16))
    expected = [np.asarray(Image.fromarray(cond.jpeg_roundtrip(f)).resize((150, 100), Image.Resampling.BICUBIC))
                for f in decoded]
    np.testing.assert_array_equal(np.stack(out), np.stack(expected))


@pytest.fixture(scope="module")
def pose_result():
    from steadydancer.pose.path import align_driving, clean_driving, extract_driving, prepare_reference
    from conftest import EXAMPLES

    options = PoseOptions(max_frames=6)
    reference = prepare_reference(EXAMPLES / "astronaut.png")
    cleaned = clean_driving(extract_driving(EXAMPLES / "dance_keyframes.poses.json", options), options)
    return reference, align_driving(reference, cleaned, options), options


def test_condition_videos_official_by_default_clean_unchanged(pose_result):
    reference, aligned, options = pose_result
    assert options.conditioning == "official" == cond.DEFAULT_CONDITIONING
    clean_pos, clean_neg = cond.condition_videos(reference, aligned, options, conditioning="clean",
                                                 size=reference.size)
    old_pos, old_neg = render_conditions(reference, aligned, options, size=reference.size)
    for a, b in zip(clean_pos + clean_neg, old_pos + old_neg):  # the clean path is the old render
        np.testing.assert_array_equal(a, b)

    pos, neg = cond.condition_videos(reference, aligned, options, size=(32, 32))  # size: ignored
    ref_w, ref_h = reference.image.size
    assert len(pos) == len(neg) == len(aligned.positive)
    assert cond.handover_size(reference) == (ref_w, ref_h)  # a photo smaller than the canvas
    assert pos[0].shape == (ref_h, ref_w, 3)  # the reference photo's own size, as official
    clean_at_ref = cond.condition_videos(reference, aligned, options, conditioning="clean")[0]
    assert clean_at_ref[0].shape == (ref_h, ref_w, 3)  # handed over like the official frames
    lit = np.stack(clean_at_ref).max(axis=-1) > 40
    diff = np.abs(np.stack(pos).astype(int) - np.stack(clean_at_ref).astype(int))[lit]
    assert diff.mean() > 2  # the compression chain shows on the limbs
    assert saturation(np.stack(pos)[lit]) < saturation(np.stack(clean_at_ref)[lit])


def test_conditioning_option_is_checked():
    with pytest.raises(SteadyDancerInputError, match="conditioning"):
        PoseOptions(conditioning="jpeg")
    with pytest.raises(SteadyDancerInputError, match="conditioning"):
        cond.check_conditioning("raw")
    assert PoseOptions(conditioning="clean").conditioning == "clean"


def test_a_photo_larger_than_the_canvas_hands_over_canvas_frames_with_the_same_pixels():
    """For a big photo the frames stay at the canvas size; the pipeline's own first resize (Pillow
    bicubic to the photo's size, as the official generator) then gives the same pixels as the chain
    run to the photo's size."""
    from types import SimpleNamespace

    from steadydancer.pose.render import official_canvas_size

    big = SimpleNamespace(image=SimpleNamespace(size=(4000, 3000)))
    canvas = official_canvas_size(4000, 3000)
    assert cond.handover_size(big) == canvas and canvas[0] * canvas[1] < 4000 * 3000
    frames = limb_frames(3, size=(96, 64))
    at_photo = list(cond.official_chain(frames, 16, (150, 100)))
    at_canvas = list(cond.official_chain(frames, 16, (96, 64)))
    for a, b in zip(at_photo, at_canvas):
        np.testing.assert_array_equal(a, cond.resize_to_reference(b, (150, 100)))


def test_the_pipeline_makes_the_official_first_resize_itself():
    """Pins what handover_size relies on: the pipeline (default resize_antialias=False) resizes pose
    frames of another size to the photo's size with exactly resize_to_reference, and leaves frames
    already at that size alone."""
    import torch

    from steadydancer.pipeline import _Frames, _image_to_tensor

    frames = limb_frames(2, size=(96, 64))
    video = _Frames(frames, "pose_video")
    torch.testing.assert_close(video.frame(1, (100, 150)),
                               _image_to_tensor(cond.resize_to_reference(frames[1], (150, 100))), rtol=0, atol=0)
    torch.testing.assert_close(video.frame(1, (64, 96)), _image_to_tensor(frames[1]), rtol=0, atol=0)
