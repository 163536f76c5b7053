"""The official pose drawing, checked pixel by pixel, against the official style frames, and the
shipped example motion."""

from __future__ import annotations

import colorsys
import importlib.util
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from steadydancer.pose.render import (
    BODY_COLORS, HAND_EDGE_COLORS, HAND_POINT_COLOR, default_thickness_scale, official_canvas_size,
    overlay, render_pose, render_sequence, resize_frames, side_by_side,
)
from steadydancer.pose.sequence import PoseFrame, PoseSequence, present
from steadydancer.pose.skeleton import BODY, BODY_LIMBS, BODY_PALETTE, HAND_EDGES, NUM_HAND

W, H = 400, 400


def frame_with(body: dict[int, tuple[float, float]] | None = None,
               hands: dict[tuple[int, int], tuple[float, float]] | None = None,
               face: dict[int, tuple[float, float]] | None = None) -> PoseFrame:
    """A PoseFrame with only the given points (pixel coordinates on a W x H canvas)."""
    f = PoseFrame.empty()
    for j, (x, y) in (body or {}).items():
        f.body[j] = (x / W, y / H, 1.0)
    for (h, j), (x, y) in (hands or {}).items():
        f.hands[h, j] = (x / W, y / H, 0.0, 1.0)
    for j, (x, y) in (face or {}).items():
        f.face[j] = (x / W, y / H, 1.0)
    return PoseFrame(f.body, f.hands, f.face)


def swapped(c):
    return (c[2], c[1], c[0])


def dimmed(c):
    return tuple(int(v * 0.6) for v in c)


# -- sizes ----------------------------------------------------------------------------------------


def test_official_canvas_size():
    assert official_canvas_size(864, 1184) == (1312, 1792)  # the style frames' size
    assert official_canvas_size(768, 1344) == (1152, 2016)
    assert default_thickness_scale(1312, 1792) == 1.0
    assert default_thickness_scale(656, 896) == 0.5


# -- body -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limb", range(len(BODY_LIMBS)))
def test_each_limb_colour_after_swap_and_dim_and_joint_colours(limb):
    a, b = BODY_LIMBS[limb]
    img = render_pose(frame_with(body={a: (100.5, 120.5), b: (300.5, 280.5)}), W, H, thickness_scale=1)
    expected_limb = dimmed(swapped(BODY_PALETTE[limb]))
    assert tuple(img[200, 200]) == expected_limb
    assert tuple(img[120, 100]) == swapped(BODY_PALETTE[a])  # joint circles at full brightness
    assert tuple(img[280, 300]) == swapped(BODY_PALETTE[b])
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert colours == {(0, 0, 0), expected_limb, swapped(BODY_PALETTE[a]), swapped(BODY_PALETTE[b])}


def test_model_sees_red_neck_blue_shoulders_red_hand_points():
    f = frame_with(body={BODY["nose"]: (200, 60), BODY["neck"]: (200, 160),
                         BODY["right_shoulder"]: (120, 160)},
                   hands={(0, 0): (300, 300), (0, 5): (300, 340)})
    img = render_pose(f, W, H, thickness_scale=1)
    assert tuple(img[110, 200]) == (153, 0, 0)  # nose-neck limb: red
    assert tuple(img[160, 150]) == (0, 0, 153)  # neck-right shoulder: blue
    assert tuple(img[300, 300]) == (255, 0, 0)  # hand point: red
    assert tuple(img[60, 200]) == (0, 0, 255)   # nose joint: palette red, swapped to blue


def limb_thickness(img: np.ndarray, column: int) -> int:
    return int((img[:, column].max(axis=1) > 0).sum())


def test_limb_width_is_the_official_ellipse():
    f = frame_with(body={BODY["neck"]: (100, 200), BODY["right_shoulder"]: (300, 200)})
    full = render_pose(f, W, H, thickness_scale=1)
    assert limb_thickness(full, 200) == 9  # short half-axis 4 px: 2 * 4 + 1 rows
    # its exact shape: the documented ellipse2Poly + fillConvexPoly
    ref = np.zeros((H, W, 3), np.uint8)
    # angle = degrees(atan2(y_neck - y_shoulder, x_neck - x_shoulder)) = 180
    cv2.fillConvexPoly(ref, cv2.ellipse2Poly((200, 200), (100, 4), 180, 0, 360, 1), dimmed((0, 0, 255)))
    inside = np.zeros((H, W), bool)
    inside[:, 150:250] = True  # away from the joint circles
    np.testing.assert_array_equal(full[inside], ref[inside])
    half = render_pose(f, W, H, thickness_scale=0.5)
    assert limb_thickness(half, 200) == 5
    # default scale: 400 / 1536 (the official canvas of a square image is 1536 px wide)
    assert default_thickness_scale(W, H) == pytest.approx(400 / 1536)
    assert limb_thickness(render_pose(f, W, H), 200) == 3


def test_coordinates_are_truncated_like_the_official_int():
    # a joint at x = 100.9 px is drawn at column 100 (int), not 101 (round)
    img = render_pose(frame_with(body={BODY["nose"]: (100.9, 50.9)}), W, H, thickness_scale=1)
    cols = np.flatnonzero(img[50].max(axis=1))
    assert (cols.min(), cols.max()) == (96, 104)  # radius 4 around column 100
    rows = np.flatnonzero(img[:, 100].max(axis=1))
    assert (rows.min(), rows.max()) == (46, 54)


def test_missing_points_skip_their_limbs():
    pts = {BODY["neck"]: (200, 100), BODY["right_shoulder"]: (150, 100),
           BODY["right_elbow"]: (140, 180), BODY["right_wrist"]: (130, 260)}
    full = render_pose(frame_with(body=pts), W, H, thickness_scale=1)
    assert full[140, 145].any() and full[220, 135].any()
    del pts[BODY["right_elbow"]]
    gone = render_pose(frame_with(body=pts), W, H, thickness_scale=1)
    assert not gone[140, 145].any() and not gone[220, 135].any()  # both elbow limbs skipped
    assert tuple(gone[260, 130]) == swapped(BODY_PALETTE[BODY["right_wrist"]])  # joint still drawn
    assert not render_pose(PoseFrame.empty(), W, H).any()


def test_limbs_are_dimmed_before_joints_and_hands():
    f = frame_with(body={BODY["neck"]: (100, 200), BODY["right_shoulder"]: (300, 200)},
                   hands={(1, 0): (200, 150), (1, 1): (200, 250)})
    img = render_pose(f, W, H, thickness_scale=1)
    # the hand edge crosses the limb after the 0.6 dimming: full brightness on top
    assert tuple(img[200, 200]) == tuple(round(v) for v in HAND_EDGE_COLORS[0])
    body_only = render_pose(f, W, H, draw_hands=False, thickness_scale=1)
    assert tuple(body_only[200, 200]) == (0, 0, 153)
    assert not render_pose(f, W, H, draw_body=False, thickness_scale=1)[200, 120].any()


# -- hands ----------------------------------------------------------------------------------------


def opencv_rounded(color) -> tuple[int, ...]:
    """OpenCV rounds float colours half-to-even (76.5 -> 76, 229.5 -> 230)."""
    return tuple(int(np.rint(v)) for v in color)


@pytest.mark.parametrize("edge", range(len(HAND_EDGES)))
def test_each_hand_edge_colour(edge):
    a, b = HAND_EDGES[edge]
    img = render_pose(frame_with(hands={(0, a): (100, 200), (0, b): (300, 200)}), W, H, thickness_scale=1)
    hsv = colorsys.hsv_to_rgb(edge / 20, 1.0, 1.0)
    expected = opencv_rounded(swapped([v * 255 for v in hsv]))
    assert tuple(img[200, 200]) == expected
    assert limb_thickness(img, 200) in (2, 3)  # a 2-px cv2.line
    assert tuple(img[200, 100]) == tuple(img[200, 300]) == (255, 0, 0)  # points: red, radius 4
    assert limb_thickness(img, 100) == 9


def test_hand_edge_colours_table():
    assert HAND_POINT_COLOR == (255, 0, 0)
    # hue 1/20 -> (255, 76.50000000000001, 0) in float64 -> 77 after the swap and OpenCV rounding
    assert opencv_rounded(HAND_EDGE_COLORS[1]) == (0, 77, 255)
    assert opencv_rounded(HAND_EDGE_COLORS[12]) == (255, 102, 0)


def test_hand_points_at_the_left_or_top_edge_count_as_missing():
    # the official test is int(x * W) > 0.01 on pixels: x = 0.9 px truncates to 0 -> skipped
    f = frame_with(hands={(1, 0): (0.9, 200), (1, 1): (200, 200), (1, 2): (200, 0.5), (1, 3): (1.5, 300)})
    img = render_pose(f, W, H, thickness_scale=1)
    assert not img[200, 100].any()       # the edge 0-1 is skipped with its end point
    assert not img[2, 200].any()         # point 2 at y = 0.5 px: skipped
    assert tuple(img[300, 1]) == (255, 0, 0)  # x = 1.5 px: drawn
    assert tuple(img[200, 200]) == (255, 0, 0)


# -- face -----------------------------------------------------------------------------------------


def test_face_is_off_by_default_and_white_dots_when_asked():
    f = frame_with(face={i: (100 + 4 * i, 300) for i in range(0, 68, 10)})
    assert not render_pose(f, W, H).any()
    img = render_pose(f, W, H, draw_face=True, thickness_scale=1)
    assert tuple(img[300, 100]) == (255, 255, 255)
    assert limb_thickness(img, 100) == 7  # radius 3


# -- sequences and previews ---------------------------------------------------------------------


def test_render_sequence_and_resize_frames():
    seq = PoseSequence.empty(3, 16, 200, 300)
    seq.body[:, BODY["nose"]] = (0.5, 0.5, 1.0)
    seq = seq.replace()
    frames = list(render_sequence(seq, 400, 600))
    assert len(frames) == 3 and frames[0].shape == (600, 400, 3)
    small = list(resize_frames(frames, (200, 300)))
    expected = np.asarray(Image.fromarray(frames[0]).resize((200, 300), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(small[0], expected)
    assert list(resize_frames(frames[:1], (400, 600)))[0] is frames[0]


def test_overlay_keeps_background_where_nothing_is_drawn():
    bg = np.full((100, 80, 3), 100, np.uint8)
    pose = np.zeros((100, 80, 3), np.uint8)
    pose[50, 40] = (255, 0, 0)
    out = overlay(pose, bg, alpha=0.6)
    assert tuple(out[0, 0]) == (100, 100, 100)
    assert tuple(out[50, 40]) == (193, 40, 40)
    assert overlay(pose, np.full((50, 40, 3), 100, np.uint8)).shape == (100, 80, 3)


def test_overlay_blends_only_the_figure_box_with_the_same_pixels():
    """Blending only the figure's bounding box equals blending the whole frame."""
    import cv2

    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    for box in [(slice(30, 70), slice(20, 41)), (slice(0, 120), slice(89, 90)), (slice(0, 1), slice(0, 1))]:
        pose = np.zeros((120, 90, 3), np.uint8)
        pose[box] = rng.integers(0, 256, pose[box].shape, dtype=np.uint8)
        pose[box][..., 1] = 0  # some pixels with one channel off, some all off
        pose[box][::3, ::2] = 0
        whole = np.where(pose.max(axis=2, keepdims=True) > 0, cv2.addWeighted(pose, 0.6, bg, 0.4, 0.0), bg)
        np.testing.assert_array_equal(overlay(pose, bg), whole)
    empty = overlay(np.zeros_like(bg), bg)
    np.testing.assert_array_equal(empty, bg) and empty is not bg


def test_side_by_side_common_height_labels_even_dims():
    a = np.full((200, 100, 3), 50, np.uint8)
    b = np.full((100, 101, 3), 200, np.uint8)
    out = side_by_side([a, b], ["pose", "result"], height=101)
    assert out.shape[0] == 102 and out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0
    assert out.shape[1] >= 51 + 103
    plain = side_by_side([a, b], None, height=101)
    assert plain.shape == out.shape and not np.array_equal(plain, out)  # labels drew something
    assert tuple(plain[90, 5]) == (50, 50, 50)


# -- the official style frames ------------------------------------------------------------------


def find_joints(img: np.ndarray) -> dict[int, np.ndarray]:
    """Body joints in a style frame: full-brightness dots of radius 4 in the joint's colour, kept
    only when a limb of the right (dimmed) colour leads to another found joint."""
    bright = img.max(-1) > 190
    found = {}
    for j, colour in enumerate(BODY_COLORS):
        mask = ((np.abs(img - np.array(colour)).max(-1) < 60) & bright).astype(np.uint8)
        n, _, stats, centres = cv2.connectedComponentsWithStats(mask)
        dots = [(stats[i, 4], centres[i]) for i in range(1, n)
                if 20 <= stats[i, 4] <= 70 and 5 <= stats[i, 2] <= 10 and 5 <= stats[i, 3] <= 10]
        if dots:
            found[j] = max(dots, key=lambda d: d[0])[1]

    def limb_seen(i, a, b):
        t = np.linspace(0.3, 0.7, 9)[:, None]
        xy = np.round(found[a] + t * (found[b] - found[a])).astype(int)
        colour = np.array(dimmed(BODY_COLORS[i]))
        return (np.abs(img[xy[:, 1], xy[:, 0]] - colour).max(-1) < 50).mean() > 0.7

    keep = set()
    for i, (a, b) in enumerate(BODY_LIMBS):
        if a in found and b in found and limb_seen(i, a, b):
            keep |= {a, b}
    return {j: p for j, p in found.items() if j in keep}


def profile(img: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray]:
    """Full width at half maximum across the segment p-q at its middle, and the peak colour."""
    d = (q - p) / np.linalg.norm(q - p)
    normal = np.array([-d[1], d[0]])
    s = np.arange(-10, 10.01, 0.25)
    xy = ((p + q) / 2)[None] + s[:, None] * normal[None]
    v = cv2.remap(img.astype(np.float32), xy[:, 0].astype(np.float32)[None],
                  xy[:, 1].astype(np.float32)[None], cv2.INTER_LINEAR)[0]
    brightness = v.max(-1)
    return (brightness > brightness.max() / 2).sum() * 0.25, v[np.argmax(brightness)]


@pytest.mark.integration
@pytest.mark.parametrize("name", ["positive_0000", "positive_0040"])
def test_matches_official_style_frames(shared_media, name):
    path = shared_media / "dwpose_style" / f"{name}.jpg"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    style = np.asarray(Image.open(path).convert("RGB")).astype(int)
    ref = Image.open(shared_media / "ref_street.png")
    assert (style.shape[1], style.shape[0]) == official_canvas_size(*ref.size) == (1312, 1792)

    joints = find_joints(style)
    # With our colours the anatomy comes out right, so the red/blue swap is the official one:
    # nose above neck, eyes above nose, shoulders level with the neck, hips below it.
    assert {0, 1, 2, 5, 8, 11, 14, 15} <= set(joints)
    y = {j: p[1] for j, p in joints.items()}
    assert y[0] < y[1] and y[14] < y[0] and y[15] < y[0]
    assert abs(y[2] - y[1]) < 40 and abs(y[5] - y[1]) < 40 and y[8] > y[1] + 200
    assert joints[2][0] < joints[1][0] < joints[5][0]  # person's right shoulder on image left

    # Re-draw the body from the found joints and compare every visible limb's width and colour.
    f = PoseFrame.empty()
    hh, ww = style.shape[:2]
    for j, (cx, cy) in joints.items():
        f.body[j] = ((round(cx) + 0.5) / ww, (round(cy) + 0.5) / hh, 1.0)
    ours = render_pose(PoseFrame(f.body, f.hands, f.face), ww, hh, draw_hands=False).astype(int)
    checked = 0
    for i, (a, b) in enumerate(BODY_LIMBS):
        length = np.linalg.norm(joints[a] - joints[b]) if a in joints and b in joints else 0
        if length > 80:
            w_style, c_style = profile(style, joints[a], joints[b])
            w_ours, c_ours = profile(ours, joints[a], joints[b])
            if length > 150:  # short limbs: joint positions (+-0.5 px) matter too much
                assert abs(w_style - w_ours) <= 1.0, (i, w_style, w_ours)
            np.testing.assert_allclose(c_style, c_ours, atol=16, err_msg=f"limb {i}")
            checked += 1
    assert checked >= 8

    # Hand points: red dots of radius 4 (same area as ours after the same JPEG round trip).
    red = ((style[..., 0] > 180) & (style[..., 1] < 90) & (style[..., 2] < 90)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(red)
    areas = [stats[i, 4] for i in range(1, n) if stats[i, 2] <= 12 and stats[i, 3] <= 12 and stats[i, 4] >= 15]
    assert len(areas) >= 20
    dot = render_pose(frame_with(hands={(0, 3): (200, 200)}), W, H, thickness_scale=1)
    import io

    buf = io.BytesIO()
    Image.fromarray(dot).save(buf, "JPEG", quality=95)
    dot = np.asarray(Image.open(buf)).astype(int)
    our_area = int(((dot[..., 0] > 180) & (dot[..., 1] < 90) & (dot[..., 2] < 90)).sum())
    assert abs(np.median(areas) - our_area) <= 6, (np.median(areas), our_area)
    # No face: nothing white in the official frames.
    assert not (style.min(-1) > 200).any()


# -- the shipped example --------------------------------------------------------------------------


def load_example_script(repo_root):
    spec = importlib.util.spec_from_file_location("make_examples", repo_root / "examples" / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_example_motion(repo_root):
    from steadydancer.video import probe_video

    json_path = repo_root / "examples" / "dance_keyframes.poses.json"
    video_path = repo_root / "examples" / "dance_keyframes.mp4"
    for path in (json_path, video_path):
        assert path.stat().st_size < 1024 * 1024, path
    seq = PoseSequence.load(json_path)
    assert (len(seq), seq.fps, seq.width, seq.height) == (81, 16, 576, 1024)
    assert 4.0 <= seq.duration <= 6.0
    assert present(seq.body).all() and present(seq.hands).all() and not present(seq.face).any()
    assert (seq.hands[..., :2] > 0.01).all() and (seq.body[..., :2] < 1).all()
    moved = np.ptp(seq.body[..., :2], axis=0).max(axis=-1)
    assert moved[BODY["right_wrist"]] > 0.3 and moved[BODY["left_ankle"]] > 0.02  # arms wave, a step
    assert json.loads(json_path.read_text())["meta"]["source"].startswith("examples/make_examples.py")
    # the script is deterministic: rebuilding gives the shipped poses
    rebuilt = load_example_script(repo_root).build_dance()
    np.testing.assert_allclose(rebuilt.body, seq.body, atol=1e-6)
    np.testing.assert_allclose(rebuilt.hands, seq.hands, atol=1e-6)
    info = probe_video(video_path, count_frames=True)
    assert (info.width, info.height, info.num_frames, info.fps, info.codec) == (576, 1024, 81, 16, "h264")
    assert NUM_HAND == 21


def _dance_frames_near_edges(repo_root, count=12, seed=0):
    """Frames of the shipped dance, some pushed against or past the canvas edges."""
    seq = PoseSequence.load(repo_root / "examples" / "dance_keyframes.poses.json")
    rng = np.random.default_rng(seed)
    frames = []
    for t in np.linspace(0, len(seq) - 1, count).astype(int):
        frame = seq[int(t)]
        shift = rng.uniform(-0.6, 0.6, size=2)
        frame.body[:, :2] += shift
        frame.hands[..., :2] += shift
        frames.append(frame)
    return frames


@pytest.mark.parametrize("canvas,size", [((1312, 1792), (656, 896)), ((1536, 1536), (768, 768)),
                                         ((1312, 1792), (464, 640)), ((400, 300), (600, 450))])
def test_fast_resize_is_pil_bicubic_bit_for_bit(repo_root, canvas, size):
    """resize_frames only resamples where the figure is; the pixels must be PIL's full resize."""
    for frame in _dance_frames_near_edges(repo_root):
        img = render_pose(frame, *canvas)
        expected = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(next(resize_frames([img], size)), expected)
    blank = np.zeros((canvas[1], canvas[0], 3), np.uint8)
    assert not next(resize_frames([blank], size)).any()


def test_dimming_only_the_limbs_equals_dimming_the_whole_canvas(repo_root):
    """The official multiplies the whole canvas by 0.6 after the limbs; filling the limbs with the
    dimmed colours must give identical pixels (overlapping limbs, figures partly off the canvas)."""
    from steadydancer.pose import render as render_module

    def whole_canvas_dim(canvas, body, stick, joint_r):
        h, w = canvas.shape[:2]
        for i, (a, b) in enumerate(BODY_LIMBS):
            if not (present(body[a:a + 1])[0] and present(body[b:b + 1])[0]):
                continue
            (x0, y0), (x1, y1) = body[a, :2] * (w, h), body[b, :2] * (w, h)
            x0, y0, x1, y1 = (float(np.clip(v, -16 * s, 16 * s)) for v, s in ((x0, w), (y0, h), (x1, w), (y1, h)))
            length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5
            angle = np.degrees(np.arctan2(y0 - y1, x0 - x1))
            poly = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), stick),
                                    int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, poly, render_module.BODY_COLORS[i])
        canvas[...] = (canvas * 0.6).astype(np.uint8)
        for j in np.flatnonzero(present(body)):
            x, y = np.clip(body[j, :2] * (w, h), (-16 * w, -16 * h), (16 * w, 16 * h))
            cv2.circle(canvas, (int(x), int(y)), joint_r, render_module.BODY_COLORS[j], thickness=-1)

    for frame in _dance_frames_near_edges(repo_root, seed=1):
        fast = render_pose(frame, 656, 896)
        original = render_module._draw_body
        render_module._draw_body = whole_canvas_dim
        try:
            reference = render_pose(frame, 656, 896)
        finally:
            render_module._draw_body = original
        np.testing.assert_array_equal(fast, reference)
