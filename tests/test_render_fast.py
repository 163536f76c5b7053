"""The fast drawing paths against the plain operations they replace, pixel for pixel:

* ``render_resized`` (the condition frames: a reused per-thread 4-channel canvas, resampled in
  place where the figure is) == ``render_pose`` on a fresh canvas, then PIL's full bicubic resize;
* ``resize_pose_frame`` (bands and runs) == PIL's full resize;
* ``preview_frame`` (panels composed in place) == the panels drawn apart and joined;
* the vectorised hand point test == the official per-point test.

Poses: the shipped dance pushed against and past every canvas edge, missing points, hands only,
a face, empty frames, points on the eps boundary; whole and non-integer scales."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from PIL import Image

from steadydancer.pose import render as render_module
from steadydancer.pose.outputs import PREVIEW_LABELS, PREVIEW_THICKNESS, PreviewLayout, preview_frame
from steadydancer.pose.render import (
    EDGE_EPS, put_label, render_pose, render_resized, resize_pose_frame,
)
from steadydancer.pose.sequence import PoseFrame, PoseSequence


def full_resize(img: np.ndarray, size) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize(tuple(size), Image.Resampling.BICUBIC))


def varied_poses(repo_root, seed: int = 0) -> list[PoseFrame]:
    """Dance frames shifted against/past the edges, with missing points, hands only, a face,
    an empty frame, and points on the official eps boundary."""
    seq = PoseSequence.load(repo_root / "examples" / "dance_keyframes.poses.json")
    rng = np.random.default_rng(seed)
    poses = []
    for i, t in enumerate(np.linspace(0, len(seq) - 1, 10).astype(int)):
        frame = seq[int(t)]
        shift = rng.uniform(-0.7, 0.7, size=2) if i % 3 else np.zeros(2)
        frame.body[:, :2] += shift
        frame.hands[..., :2] += shift
        if i % 2:  # some points missing
            frame.body[rng.random(len(frame.body)) < 0.3] = np.nan
            frame.hands[rng.random(frame.hands.shape[:2]) < 0.3] = np.nan
        poses.append(frame)
    hands_only = seq[40]
    hands_only.body[:] = np.nan
    poses.append(hands_only)
    with_face = seq[10]
    with_face.face[:, :2] = rng.uniform(0.3, 0.7, size=(len(with_face.face), 2))
    with_face.face[:, 2] = 1.0
    poses.append(with_face)
    corners = seq[20]  # joints exactly on the canvas corners and edges
    corners.body[:4, :2] = [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]
    corners.hands[0, :3, :2] = [(0.0, 0.5), (0.5, 0.0), (0.001, 0.999)]
    poses.append(corners)
    poses.append(PoseFrame.empty())
    return poses


# -- condition frames ----------------------------------------------------------------------------


@pytest.mark.parametrize("canvas,size", [
    ((1536, 1536), (768, 768)),    # the shipped example's official canvas
    ((1312, 1792), (656, 896)),
    ((1248, 1856), (416, 464)),    # scale 3 across, 4 down
    ((1000, 700), (500, 350)),     # rows not a multiple of the band planning blocks
    ((1312, 1792), (464, 640)),    # non-integer scale: the plain resize
    ((640, 480), (640, 480)),      # no resize
])
def test_render_resized_is_the_plain_render_then_the_full_resize(repo_root, canvas, size):
    for draw_face in (False, True):
        for pose in varied_poses(repo_root):
            expected = render_pose(pose, *canvas, draw_face=draw_face)
            if tuple(size) != tuple(canvas):
                expected = full_resize(expected, size)
            got = render_resized(pose, canvas, size, draw_face=draw_face)
            np.testing.assert_array_equal(got, expected)
            assert got.flags.c_contiguous


def test_the_rgbx_mapping_fallback_gives_the_same_frames(repo_root, monkeypatch):
    """Where Pillow cannot map an RGB image onto 4-byte pixels, the RGBX mapping is used."""
    from PIL import Image

    map_buffer = Image.core.map_buffer
    modes = []

    def rgbx_only(data, size, decoder, offset, args):
        modes.append(args[0])
        if args[0] == "RGB":
            raise ValueError("unsupported mode")
        return map_buffer(data, size, decoder, offset, args)

    monkeypatch.setattr(Image.core, "map_buffer", rgbx_only)
    monkeypatch.setattr(render_module, "_SCRATCH", threading.local())
    canvas, size = (1312, 1792), (656, 896)
    for pose in varied_poses(repo_root, seed=2):
        np.testing.assert_array_equal(render_resized(pose, canvas, size), full_resize(render_pose(pose, *canvas), size))
    assert modes == ["RGB", "RGBX", "RGB", "RGBX"]


def test_the_reused_canvas_is_black_again_and_returned_frames_stay(repo_root):
    """After a frame, nothing of it is left on the thread's canvas (an empty pose gives black),
    and a returned frame is never written again by later renders."""
    poses = varied_poses(repo_root, seed=3)
    canvas, size = (1536, 1536), (768, 768)
    first = render_resized(poses[1], canvas, size)
    kept = first.copy()
    for pose in poses:
        render_resized(pose, canvas, size)
        assert not render_resized(PoseFrame.empty(), canvas, size).any()
        assert not render_module._scratch(canvas, size).canvas.any()
    np.testing.assert_array_equal(first, kept)


def test_a_failure_mid_frame_leaves_a_black_canvas(repo_root, monkeypatch):
    pose = varied_poses(repo_root)[0]
    canvas, size = (1312, 1792), (656, 896)

    def fail(self):
        raise RuntimeError("resample failed")

    with monkeypatch.context() as patch:
        patch.setattr(render_module._ResampleScratch, "resample", fail)
        with pytest.raises(RuntimeError):
            render_resized(pose, canvas, size)
    assert not render_resized(PoseFrame.empty(), canvas, size).any()
    np.testing.assert_array_equal(render_resized(pose, canvas, size), full_resize(render_pose(pose, *canvas), size))


def test_render_threads_each_draw_on_their_own_canvas(repo_root):
    """Two threads rendering different poses at once get exactly the plain frames."""
    poses = varied_poses(repo_root, seed=5)
    canvas, size = (1312, 1792), (656, 896)
    expected = [full_resize(render_pose(p, *canvas), size) for p in poses]
    results: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        order = poses if k == 0 else poses[::-1]
        results[k] = [render_resized(p, canvas, size) for _ in range(3) for p in order]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, order in ((0, expected), (1, expected[::-1])):
        for got, want in zip(results[k], order * 3):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("canvas,size", [((1536, 1536), (768, 768)), ((1248, 1856), (416, 464)),
                                         ((1000, 700), (500, 350))])
def test_resize_pose_frame_is_the_full_resize(repo_root, canvas, size):
    for pose in varied_poses(repo_root, seed=7):
        img = render_pose(pose, *canvas, draw_face=True)
        np.testing.assert_array_equal(resize_pose_frame(img, size), full_resize(img, size))
    # Lone pixels: in every corner, and at every position modulo the scale (the kernel's reach
    # over the output grid depends on it), one channel each.
    dots = np.zeros((canvas[1], canvas[0], 3), np.uint8)
    spots = [(0, 0), (0, canvas[0] - 1), (canvas[1] - 1, 0), (canvas[1] - 1, canvas[0] - 1)]
    spots += [(100 + 37 * k + k % (canvas[1] // size[1]), 100 + 41 * k + k % (canvas[0] // size[0])) for k in range(12)]
    for k, (y, x) in enumerate(spots):
        dots[y, x, k % 3] = 255
    np.testing.assert_array_equal(resize_pose_frame(dots, size), full_resize(dots, size))


# -- the hand point test -------------------------------------------------------------------------


def test_visible_pixels_is_the_official_per_point_test():
    rng = np.random.default_rng(0)
    width, height = 1312, 1792
    values = np.concatenate([rng.uniform(-0.2, 1.2, 400), [0.0, -0.0, 0.5 / width, 1.0 / width, 1.5 / width,
                                                           EDGE_EPS / width, -0.4 / width, 17.0, -17.0, np.nan]])
    points = np.stack([rng.choice(values, 600), rng.choice(values, 600), np.ones(600)], axis=1)
    points[rng.random(600) < 0.1, 2] = 0.0
    pixels, visible = render_module._visible_pixels(points, width, height)
    xy, ok = render_module._pixels(points, width, height)
    plain = [(int(x), int(y)) for x, y in xy]
    assert pixels == plain
    assert visible.tolist() == [bool(k) and px > EDGE_EPS and py > EDGE_EPS for k, (px, py) in zip(ok, plain)]


# -- previews ------------------------------------------------------------------------------------


def plain_preview(layout: PreviewLayout, driving, extracted, aligned) -> np.ndarray:
    """The preview as separate images: each panel drawn on its own, scaled, labelled, joined."""
    (drv_w, drv_h), (ref_w, ref_h) = layout.drv_size, layout.ref_size
    height = layout.height + layout.height % 2
    pose_ext = render_pose(extracted, drv_w, drv_h, draw_face=layout.draw_face, thickness_scale=PREVIEW_THICKNESS)
    pose_al = render_pose(aligned, ref_w, ref_h, draw_face=layout.draw_face, thickness_scale=PREVIEW_THICKNESS)
    bg = layout.background
    if bg.shape[:2] != (ref_h, ref_w):
        bg = cv2.resize(bg, (ref_w, ref_h), interpolation=cv2.INTER_AREA if bg.shape[0] > ref_h else cv2.INTER_CUBIC)
    blended = cv2.addWeighted(pose_al, 0.6, bg, 0.4, 0.0)
    over = np.where(pose_al.max(axis=2, keepdims=True) > 0, blended, bg)
    panels = []
    for panel, label in zip([driving if driving is not None else np.zeros((drv_h, drv_w, 3), np.uint8),
                             pose_ext, over], PREVIEW_LABELS):
        ph, pw = panel.shape[:2]
        new_w = max(1, int(round(pw * height / ph)))
        if (new_w, height) != (pw, ph):
            panel = cv2.resize(panel, (new_w, height), interpolation=cv2.INTER_AREA if ph > height else cv2.INTER_CUBIC)
        panel = panel.copy()
        put_label(panel, label)
        panels.append(panel)
    out = np.concatenate(panels, axis=1)
    if out.shape[1] % 2:
        out = np.concatenate([out, np.zeros((height, 1, 3), np.uint8)], axis=1)
    return out


@pytest.mark.parametrize("height,drv_w,ref_w", [(480, 270, 480), (481, 271, 330), (200, 113, 200)])
def test_preview_frame_is_the_panels_drawn_apart(repo_root, height, drv_w, ref_w):
    rng = np.random.default_rng(height)
    background = rng.integers(0, 256, (height, ref_w, 3), dtype=np.uint8)
    poses = varied_poses(repo_root, seed=height)
    drivings = [None, rng.integers(0, 256, (height, drv_w, 3), dtype=np.uint8),
                rng.integers(0, 256, (270, 480, 3), dtype=np.uint8)]
    for draw_face in (False, True):
        layout = PreviewLayout((drv_w, height), (ref_w, height), background, height, draw_face)
        for i, pose in enumerate(poses):
            driving = drivings[i % len(drivings)]
            other = poses[-1 - i]
            got = preview_frame(layout, driving, pose, other)
            np.testing.assert_array_equal(got, plain_preview(layout, driving, pose, other))
            assert got.shape[0] % 2 == 0 and got.shape[1] % 2 == 0
