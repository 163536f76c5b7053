"""Alignment of a driving pose sequence onto the reference character (steadydancer.pose.align)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose.align import (
    SCALE_GROUPS,
    AlignmentInfo,
    align_sequence,
    choose_alignment_frames,
    compute_scales,
    lead_in,
)
from steadydancer.pose.sequence import PoseFrame, PoseSequence, present
from steadydancer.pose.skeleton import BODY, BODY_BONES, HAND_WRIST, LEFT_HAND, RIGHT_HAND

from conftest import STANDING  # a standing person, in units of image height

B = BODY



def body_h(points: dict | None = None) -> np.ndarray:
    pts = dict(STANDING, **(points or {}))
    return np.array([pts[name] for name in sorted(B, key=B.get)], dtype=np.float64)


def hand_h(wrist: np.ndarray, size: float = 0.05, angle: float = 0.0) -> np.ndarray:
    """21 hand points hanging from ``wrist`` (fingers fanning downwards)."""
    pts = [wrist]
    for finger in range(5):
        direction = np.deg2rad(angle + 60 + 15 * finger)
        for j in range(1, 5):
            r = size * (0.35 + 0.18 * j)
            pts.append(wrist + r * np.array([math.cos(direction), math.sin(direction)]))
    return np.array(pts)


def face_h(nose: np.ndarray, size: float = 0.03) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return nose + size * np.stack([np.cos(angles), np.sin(angles) * 1.2], -1)


def frame_from_h(body: np.ndarray, aspect: float, hands=None, face=None, conf=0.9) -> PoseFrame:
    """A PoseFrame normalised to an image of ``aspect`` = W/H from height-unit points."""
    hands = hands if hands is not None else np.stack(
        [hand_h(body[HAND_WRIST[LEFT_HAND]]), hand_h(body[HAND_WRIST[RIGHT_HAND]])])
    face = face if face is not None else face_h(body[B["nose"]])

    def norm(xy, extra):
        xy = np.array(xy, dtype=np.float64)
        xy[..., 0] /= aspect
        cols = [xy] + [np.full(xy.shape[:-1] + (1,), v) for v in extra]
        return np.concatenate(cols, -1)

    return PoseFrame(body=norm(body, [conf]), hands=norm(hands, [0.0, conf]), face=norm(face, [conf]))


def scaled_about(points: np.ndarray, centre, factor: float) -> np.ndarray:
    return np.asarray(centre) + factor * (points - np.asarray(centre))


def sequence(frames, fps=30.0, size=(720, 1280)) -> PoseSequence:
    return PoseSequence.from_frames(frames, fps=fps, width=size[0], height=size[1])


def to_h(points: np.ndarray, size) -> np.ndarray:
    xy = np.array(points[..., :2], dtype=np.float64)
    xy[..., 0] *= size[0] / size[1]
    return xy


def bone_lengths(body_xy: np.ndarray) -> np.ndarray:
    return np.array([np.linalg.norm(body_xy[b.child] - body_xy[b.parent]) for b in BODY_BONES])


DRV_SIZE = (720, 1280)   # portrait driving video
REF_SIZE = (1024, 576)   # landscape reference image: aspect handling matters


@pytest.fixture
def two_x_case():
    """A driving clip whose first frame is the standing pose, and a reference that is exactly the
    same pose 1.6x bigger about its neck (so every ratio is 1.6), placed elsewhere, in an image of
    another aspect ratio."""
    drv_aspect = DRV_SIZE[0] / DRV_SIZE[1]
    ref_aspect = REF_SIZE[0] / REF_SIZE[1]
    b0 = body_h()
    frames = []
    for t in range(6):
        b = b0 + np.array([0.01 * t, 0.005 * t])  # global motion only, so lengths stay put
        b[B["right_wrist"]] += [0.0, -0.03 * t]  # ... and the right forearm changes (lengths vary)
        frames.append(frame_from_h(b, drv_aspect))
    drv = sequence(frames, size=DRV_SIZE)
    ref_neck = np.array([0.9, 0.35])
    factor = 1.6
    ref_body = scaled_about(b0, b0[B["neck"]], factor) - b0[B["neck"]] + ref_neck
    ref_hands = np.stack([
        scaled_about(hand_h(b0[HAND_WRIST[h]]), b0[B["neck"]], factor) - b0[B["neck"]] + ref_neck
        for h in (LEFT_HAND, RIGHT_HAND)])
    ref_face = scaled_about(face_h(b0[B["nose"]]), b0[B["neck"]], factor) - b0[B["neck"]] + ref_neck
    ref = frame_from_h(ref_body, ref_aspect, hands=ref_hands, face=ref_face)
    return drv, ref, factor


# ----------------------------------------------------------------------------------------------
# Scales
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["official", "robust"])
def test_exact_scales_and_bone_lengths(two_x_case, mode):
    drv, ref, factor = two_x_case
    scales = compute_scales(ref, REF_SIZE, drv, [0], mode=mode)
    assert set(scales) == set(SCALE_GROUPS)
    for group, value in scales.items():
        assert value == pytest.approx(factor, rel=1e-6), group

    aligned, info = align_sequence(drv, ref, REF_SIZE, mode=mode, alignment_frame=0)
    assert isinstance(info, AlignmentInfo) and info.mode == mode and info.alignment_frames == [0]
    assert (aligned.width, aligned.height) == REF_SIZE
    # Frame 0 lands exactly on the reference (body and hands).
    np.testing.assert_allclose(aligned.body[0, :, :2], ref.body[:, :2], atol=1e-5)
    np.testing.assert_allclose(aligned.hands[0, ..., :2], ref.hands[..., :2], atol=1e-5)
    # Every frame: bone lengths exactly factor x, directions kept.
    for t in range(len(drv)):
        a = to_h(aligned.body[t], REF_SIZE)
        d = to_h(drv.body[t], DRV_SIZE)
        np.testing.assert_allclose(bone_lengths(a), factor * bone_lengths(d), rtol=1e-4)
        for bone in BODY_BONES:
            va, vd = a[bone.child] - a[bone.parent], d[bone.child] - d[bone.parent]
            cos = va @ vd / np.linalg.norm(va) / np.linalg.norm(vd)
            assert cos == pytest.approx(1.0, abs=1e-6)
    # Confidences are carried over.
    np.testing.assert_allclose(aligned.body[..., 2], drv.body[..., 2])


def test_official_scale_rules_nan_and_inf():
    drv_aspect = DRV_SIZE[0] / DRV_SIZE[1]
    b = body_h()
    drv_body = b.copy()
    drv_body[B["left_knee"]] = np.nan  # upper and lower leg unmeasurable (one side missing) -> NaN -> 1
    drv_body[B["right_ear"]] = drv_body[B["nose"]]  # ear-eye 0 and eye-nose 0 -> ratio inf
    drv_body[B["right_eye"]] = drv_body[B["nose"]]
    drv = sequence([frame_from_h(drv_body, drv_aspect)], size=DRV_SIZE)
    ref = frame_from_h(scaled_about(b, b[B["neck"]], 1.5), 1.0)
    scales = compute_scales(ref, (800, 800), drv, [0], mode="official")
    assert scales["upper_leg"] == 1.0 and scales["lower_leg"] == 1.0
    finite_others = [v for g, v in scales.items() if g != "face_right"]
    assert scales["face_right"] == pytest.approx(np.mean(finite_others))
    assert scales["torso"] == pytest.approx(1.5)
    aligned, _ = align_sequence(drv, ref, (800, 800), mode="official")
    ok = present(aligned.body)
    assert np.isfinite(aligned.body[ok]).all()
    assert not ok[0, B["left_knee"]]  # missing stays missing


def test_translation_rule_uses_alignment_frame_neck(two_x_case):
    drv, ref, _ = two_x_case
    for frame in (0, 3):
        aligned, info = align_sequence(drv, ref, REF_SIZE, mode="official", alignment_frame=frame)
        ref_neck = to_h(ref.body, REF_SIZE)[B["neck"]]
        drv_neck = to_h(drv.body[frame], DRV_SIZE)[B["neck"]]
        np.testing.assert_allclose(info.offset, ref_neck - drv_neck, atol=1e-6)
        # The alignment frame's neck lands on the reference neck; the others keep their motion.
        np.testing.assert_allclose(aligned.body[frame, B["neck"], :2], ref.body[B["neck"], :2], atol=1e-6)
        motion = to_h(drv.body[:, B["neck"]], DRV_SIZE) - drv_neck
        np.testing.assert_allclose(to_h(aligned.body[:, B["neck"]], REF_SIZE) - ref_neck, motion, atol=1e-6)


def test_aspect_handling_lengths_in_height_units():
    """A square driving image and a wide reference: a horizontal shoulder line of 0.16 height in
    both must get shoulder scale 1, and the aligned shoulders must span 0.16 height units."""
    b = body_h()
    drv = sequence([frame_from_h(b, 1.0)], size=(500, 500))
    ref = frame_from_h(b, 2.0)
    scales = compute_scales(ref, (1000, 500), drv, [0], mode="official")
    for value in scales.values():
        assert value == pytest.approx(1.0, rel=1e-6)
    aligned, _ = align_sequence(drv, ref, (1000, 500), mode="official")
    a = to_h(aligned.body[0], (1000, 500))
    assert np.linalg.norm(a[B["right_shoulder"]] - a[B["left_shoulder"]]) == pytest.approx(0.16, rel=1e-6)
    # In normalised coordinates of the wide reference the x span halves.
    span = aligned.body[0, B["left_shoulder"], 0] - aligned.body[0, B["right_shoulder"], 0]
    assert span == pytest.approx(0.08, rel=1e-5)


def test_walk_moves_subtrees_hands_and_face():
    """A longer upper arm in the reference moves the elbow, and with it the wrist and every point
    of that hand, by the same vector; the other arm does not move."""
    b = body_h()
    drv = sequence([frame_from_h(b, 1.0)], size=(600, 600))
    ref_body = b.copy()
    ref_body[B["right_elbow"]] = b[B["right_shoulder"]] + 2.0 * (b[B["right_elbow"]] - b[B["right_shoulder"]])
    ref_body[B["left_elbow"]] = b[B["left_shoulder"]] + 2.0 * (b[B["left_elbow"]] - b[B["left_shoulder"]])
    for side in ("right", "left"):
        ref_body[B[f"{side}_wrist"]] += ref_body[B[f"{side}_elbow"]] - b[B[f"{side}_elbow"]]
    ref = frame_from_h(ref_body, 1.0)
    aligned, info = align_sequence(drv, ref, (600, 600), mode="official")
    assert info.scales["upper_arm"] == pytest.approx(2.0)
    assert info.scales["lower_arm"] == pytest.approx(1.0)
    assert info.scales["hand"] == pytest.approx(1.5)
    a = aligned.body[0, :, :2].astype(np.float64)
    shift = b[B["right_elbow"]] - b[B["right_shoulder"]]
    np.testing.assert_allclose(a[B["right_elbow"]] - b[B["right_elbow"]], shift, atol=1e-6)
    np.testing.assert_allclose(a[B["right_wrist"]] - b[B["right_wrist"]], shift, atol=1e-6)
    hand = aligned.hands[0, RIGHT_HAND, :, :2]
    np.testing.assert_allclose(hand[0], a[B["right_wrist"]], atol=1e-6)  # the hand's wrist sits on it
    drv_hand = drv.hands[0, RIGHT_HAND, :, :2]
    np.testing.assert_allclose(hand - hand[0], 1.5 * (drv_hand - drv_hand[0]), atol=1e-6)
    np.testing.assert_allclose(a[B["right_hip"]], b[B["right_hip"]], atol=1e-6)
    # Official: the face is only translated (offset is 0 here), robust: it follows the nose.
    np.testing.assert_allclose(aligned.face[0, :, :2], drv.face[0, :, :2], atol=1e-6)


def test_face_follows_head_in_robust_mode(two_x_case):
    drv, ref, factor = two_x_case
    aligned, _ = align_sequence(drv, ref, REF_SIZE, mode="robust", alignment_frame=0)
    np.testing.assert_allclose(aligned.face[0, :, :2], ref.face[:, :2], atol=1e-5)
    official, info = align_sequence(drv, ref, REF_SIZE, mode="official")
    expected = to_h(drv.face[0], DRV_SIZE) + np.array(info.offset)
    expected[:, 0] /= REF_SIZE[0] / REF_SIZE[1]
    np.testing.assert_allclose(official.face[0, :, :2], expected, atol=1e-6)


def test_missing_points_and_orphans_never_leak_nan():
    """Missing driving points stay missing; a present wrist whose elbow is missing is placed from
    the shoulder (nearest present ancestor) instead of disappearing or going to NaN."""
    b = body_h()
    frames = []
    for t in range(4):
        body = b.copy()
        if t == 1:
            body[B["right_elbow"]] = np.nan
        if t == 2:
            body[B["neck"]] = np.nan  # neck missing: the shoulders' midpoint anchors the walk
        frames.append(frame_from_h(body, 1.0))
    drv = sequence(frames, size=(600, 600))
    ref = frame_from_h(scaled_about(b, b[B["neck"]], 1.25), 1.0)
    for mode in ("official", "robust"):
        aligned, _ = align_sequence(drv, ref, (600, 600), mode=mode, alignment_frame=0)
        np.testing.assert_array_equal(present(aligned.body), present(drv.body))
        np.testing.assert_array_equal(present(aligned.hands), present(drv.hands))
        for arr in (aligned.body, aligned.hands, aligned.face):
            assert np.isfinite(arr[present(arr)]).all()
        # The orphan wrist keeps its place relative to the shoulder, scaled 1.25.
        wrist = aligned.body[1, B["right_wrist"], :2]
        np.testing.assert_allclose(wrist, aligned.body[0, B["right_wrist"], :2], atol=1e-6)
        np.testing.assert_allclose(aligned.body[2, B["right_shoulder"], :2],
                                   aligned.body[0, B["right_shoulder"], :2], atol=1e-6)


def test_robust_alignment_frame_skips_corrupted_first_frame():
    b = body_h()
    frames = []
    for t in range(30):
        body = b + np.array([0.002 * t, 0.0])
        if t == 0:  # the detector grabbed a wild arm in frame 0
            body[B["right_elbow"]] = body[B["right_shoulder"]] + [-0.35, 0.02]
            body[B["right_wrist"]] = body[B["right_elbow"]] + [-0.3, 0.0]
        if t == 1:  # and lost the legs in frame 1
            for name in ("right_knee", "right_ankle", "left_knee", "left_ankle"):
                body[B[name]] = np.nan
        frames.append(frame_from_h(body, 1.0))
    drv = sequence(frames, size=(600, 600))
    chosen = choose_alignment_frames(drv, max_frames=5, search=48)
    assert chosen[0] == 2 and 0 not in chosen and 1 not in chosen
    assert len(chosen) == 5 and chosen == sorted(chosen)
    ref = frame_from_h(scaled_about(b, b[B["neck"]], 1.5), 1.0)
    _, robust = align_sequence(drv, ref, (600, 600), mode="robust")
    _, official = align_sequence(drv, ref, (600, 600), mode="official")
    assert robust.alignment_frames == chosen
    assert robust.scales["upper_arm"] == pytest.approx(1.5, rel=1e-6)
    assert abs(official.scales["upper_arm"] - 1.5) > 0.4  # the official single-frame estimate is spoilt


def test_robust_uses_weighted_median_over_frames():
    b = body_h()
    frames = []
    for t in range(5):
        body = b.copy()
        if t == 2:  # one foreshortened frame among good ones
            body[B["left_elbow"]] = body[B["left_shoulder"]] + 0.3 * (b[B["left_elbow"]] - b[B["left_shoulder"]])
            body[B["left_wrist"]] = body[B["left_elbow"]] + (b[B["left_wrist"]] - b[B["left_elbow"]])
        frames.append(frame_from_h(body, 1.0))
    drv = sequence(frames, size=(600, 600))
    ref = frame_from_h(scaled_about(b, b[B["neck"]], 1.2), 1.0)
    scales = compute_scales(ref, (600, 600), drv, [0, 1, 2, 3, 4], mode="robust")
    assert scales["upper_arm"] == pytest.approx(1.2, rel=1e-6)
    assert compute_scales(ref, (600, 600), drv, [2], mode="official")["upper_arm"] > 2.0


def test_mirror_fallback_and_clamping():
    b = body_h()
    drv_body = b.copy()
    drv_body[B["left_elbow"]] = np.nan
    drv = sequence([frame_from_h(drv_body, 1.0)], size=(600, 600))
    ref_body = scaled_about(b, b[B["neck"]], 1.3)
    ref_body[B["right_elbow"]] = np.nan  # reference has only the left upper arm
    ref_body[B["left_ear"]] = ref_body[B["left_eye"]] + 5.0 * (ref_body[B["left_ear"]] - ref_body[B["left_eye"]])
    ref = frame_from_h(ref_body, 1.0)
    scales = compute_scales(ref, (600, 600), drv, [0], mode="robust")
    assert scales["upper_arm"] == pytest.approx(1.3, rel=1e-6)  # left ref / right driving
    assert scales["face_left"] == pytest.approx(2.0 * 1.3, rel=1e-6)  # clamped to 2x the median
    official = compute_scales(ref, (600, 600), drv, [0], mode="official")
    assert official["upper_arm"] == 1.0  # NaN -> 1


def test_half_body_reference_with_full_body_dancer_stays_bounded():
    """A close-up reference without legs (like a portrait photo) driven by a full-body dancer."""
    b = body_h()
    frames = [frame_from_h(b + np.array([0.0, 0.01 * math.sin(t)]), 9 / 16) for t in range(8)]
    drv = sequence(frames, size=(720, 1280))
    ref_body = scaled_about(b, b[B["neck"]], 2.5) - b[B["neck"]] + np.array([0.5, 0.35])
    for name in ("right_knee", "right_ankle", "left_knee", "left_ankle"):
        ref_body[B[name]] = np.nan
    ref_body[B["right_hip"]] = np.nan  # hips barely at the bottom edge: one detected
    ref = frame_from_h(ref_body, 1.0)
    aligned, info = align_sequence(drv, ref, (800, 800), mode="robust")
    for group in ("upper_leg", "lower_leg", "torso"):
        assert info.scales[group] == pytest.approx(2.5, rel=1e-6)
    for arr in (aligned.body, aligned.hands, aligned.face):
        ok = present(arr)
        assert np.isfinite(arr[ok]).all()
        assert (arr[ok][:, :2] >= -0.5).all() and (arr[ok][:, :2] <= 1.5).all()
    assert not present(aligned.body)[:, B["right_ankle"]].any()  # far below the canvas: dropped
    assert present(aligned.body)[:, B["right_knee"]].all()       # just below: kept for drawing
    official, oinfo = align_sequence(drv, ref, (800, 800), mode="official")
    assert oinfo.scales["upper_leg"] == 1.0  # official: unmeasured legs keep the dancer's size
    # ... and that is not a failure by itself: auto keeps the official result.
    auto, ainfo = align_sequence(drv, ref, (800, 800))
    assert ainfo.mode == "official" and ainfo.scales == oinfo.scales
    np.testing.assert_array_equal(auto.body, official.body)


def test_inputs_without_person_raise_user_errors(two_x_case):
    drv, ref, _ = two_x_case
    with pytest.raises(SteadyDancerInputError):
        align_sequence(drv, PoseFrame.empty(), REF_SIZE)
    with pytest.raises(SteadyDancerInputError):
        align_sequence(PoseSequence.empty(3, 30, 64, 64), ref, REF_SIZE)
    with pytest.raises(SteadyDancerInputError):
        align_sequence(drv, ref, REF_SIZE, alignment_frame=99)
    with pytest.raises(ValueError):
        align_sequence(drv, ref, REF_SIZE, mode="fancy")


def test_lead_in_moves_from_reference_to_first_aligned_frame(two_x_case):
    drv, ref, _ = two_x_case
    aligned, _ = align_sequence(drv, ref, REF_SIZE, mode="robust", alignment_frame=3)
    start = ref.copy()
    start.body[B["left_ankle"], :2] = np.nan  # reference-only / driving-only points
    start.body[B["left_ankle"], 2] = 0
    aligned.body[0, B["right_ankle"], :2] = np.nan
    aligned.body[0, B["right_ankle"], 2] = 0
    n = 8
    seq = lead_in(start, aligned, n)
    assert len(seq) == n + len(aligned) and seq.meta["lead_in_frames"] == n
    np.testing.assert_allclose(seq.body[n:], aligned.body, equal_nan=True)
    both = present(start.body) & present(aligned.body[0])
    np.testing.assert_allclose(seq.body[0][both], start.body[both], atol=1e-6)  # starts at the reference
    np.testing.assert_allclose(seq.hands[0, ..., :2], start.hands[..., :2], atol=1e-6)
    # Monotone ease-in-out along the neck's path, slow at both ends.
    neck = seq.body[: n + 1, B["neck"], :2].astype(np.float64)
    progress = np.linalg.norm(neck - neck[0], axis=-1) / np.linalg.norm(neck[-1] - neck[0])
    steps = np.diff(progress)
    assert (steps > 0).all() and steps[0] < steps[n // 2] and steps[-1] < steps[n // 2]
    # One-sided points: shown on their own half, no NaN leaks.
    assert present(seq.body[:n, B["right_ankle"]]).tolist() == [True] * (n // 2) + [False] * (n // 2)
    assert present(seq.body[:n, B["left_ankle"]]).tolist() == [False] * (n // 2) + [True] * (n // 2)
    for arr in (seq.body, seq.hands, seq.face):
        assert np.isfinite(arr[present(arr)]).all()
    assert len(lead_in(start, aligned, 0)) == len(aligned)


# ----------------------------------------------------------------------------------------------
# auto: the official alignment unless it fails
# ----------------------------------------------------------------------------------------------


def test_auto_is_exactly_the_official_alignment_on_clean_input(two_x_case):
    drv, ref, _ = two_x_case
    auto, info = align_sequence(drv, ref, REF_SIZE)  # the default mode
    official, oinfo = align_sequence(drv, ref, REF_SIZE, mode="official")
    for part in ("body", "hands", "face"):
        np.testing.assert_array_equal(getattr(auto, part), getattr(official, part))
    assert info.mode == "official" and info.scales == oinfo.scales
    assert info.notes[0].startswith("auto: the official alignment's result is sound")
    assert auto.meta["alignment"]["notes"][0] == info.notes[0]


def _corrupted_first_frame_case(elbow, wrist):
    """12 frames of the standing pose; in frame 0 (the one the official rule measures on) the
    detector placed the right elbow and wrist at these offsets; a reference 1.5x the dancer."""
    b = body_h()
    frames = []
    for t in range(12):
        body = b + np.array([0.002 * t, 0.0])
        if t == 0:
            body[B["right_elbow"]] = body[B["right_shoulder"]] + elbow
            body[B["right_wrist"]] = body[B["right_elbow"]] + wrist
        frames.append(frame_from_h(body, 1.0))
    return sequence(frames, size=(600, 600)), frame_from_h(scaled_about(b, b[B["neck"]], 1.5), 1.0)


def test_auto_keeps_an_official_result_a_spoilt_first_frame_leaves_usable():
    # A wild right arm in frame 0: the official arm scales become ~1.0 instead of 1.5 (the mean of
    # a spoilt right and a sound left side) -- smaller arms, but within 2x of the other scales.
    drv, ref = _corrupted_first_frame_case(elbow=[-0.35, 0.02], wrist=[-0.3, 0.0])
    auto, info = align_sequence(drv, ref, (600, 600), mode="auto")
    official, oinfo = align_sequence(drv, ref, (600, 600), mode="official")
    np.testing.assert_array_equal(auto.body, official.body)
    assert info.mode == "official" and info.scales["upper_arm"] == pytest.approx(oinfo.scales["upper_arm"])
    assert 0.9 < info.scales["upper_arm"] < 1.1


def test_auto_falls_back_to_robust_when_the_official_result_is_broken():
    # Frame 0 caught the right arm pointing at the camera: 6x foreshortened, so the official upper
    # arm scale is ~5x and the lower arm ~3x the others -- arms thrown across the canvas.
    drv, ref = _corrupted_first_frame_case(elbow=[-0.005, 0.02], wrist=[-0.003, 0.016])
    auto, info = align_sequence(drv, ref, (600, 600), mode="auto")
    robust, _ = align_sequence(drv, ref, (600, 600), mode="robust")
    np.testing.assert_array_equal(auto.body, robust.body)
    assert info.mode == "robust" and "auto: the official alignment's result is broken" in info.notes[0]
    assert "upper_arm scale" in info.notes[0] and "far off the others" in info.notes[0]
    assert info.scales["upper_arm"] == pytest.approx(1.5, rel=1e-6)
    assert auto.meta["alignment"]["notes"][0] == info.notes[0]


def test_auto_keeps_official_for_a_half_body_photo_unless_points_fly_off_the_canvas():
    b = body_h()
    drv = sequence([frame_from_h(b + [0.0, 0.01 * t], 1.0) for t in range(6)], size=(600, 600))

    def half_body(factor):
        ref_body = scaled_about(b, b[B["neck"]], factor)
        for name in ("right_knee", "right_ankle", "left_knee", "left_ankle"):
            ref_body[B[name]] = np.nan
        return frame_from_h(ref_body, 1.0)

    # Legs the photo lacks: the official sets their scale to 1 -- not a failure by itself.
    _, info = align_sequence(drv, half_body(1.4), (600, 600))
    assert info.mode == "official" and info.scales["upper_leg"] == 1.0

    # A close-up 5x the dancer: most of the body lands more than half a canvas outside the frame.
    _, info = align_sequence(drv, half_body(5.0), (600, 600))
    assert info.mode == "robust" and "outside the frame" in info.notes[0]
    assert info.scales["upper_leg"] == pytest.approx(5.0, rel=1e-6)  # robust: legs follow the torso


def test_auto_flags_outlier_scales_and_lost_points():
    from steadydancer.pose.align import official_failures

    b = body_h()
    drv_body = b.copy()
    # foreshortened upper arms in the only frame: official ratio ~3x the others
    for side in ("right", "left"):
        sh, el, wr = B[f"{side}_shoulder"], B[f"{side}_elbow"], B[f"{side}_wrist"]
        drv_body[el] = b[sh] + 0.3 * (b[el] - b[sh])
        drv_body[wr] = drv_body[el] + (b[wr] - b[el])
    drv = sequence([frame_from_h(drv_body, 1.0)] * 3, size=(600, 600))
    ref = frame_from_h(b, 1.0)
    reasons = official_failures(ref, (600, 600), drv)
    assert len(reasons) == 1 and reasons[0].startswith("upper_arm scale") and "far off the others" in reasons[0]
    sound = sequence([frame_from_h(b, 1.0)] * 3, size=(600, 600))
    assert official_failures(ref, (600, 600), sound) == []

    # Judged on the result itself: a present point that came out non-finite breaks it.
    aligned, info = align_sequence(sound, ref, (600, 600), mode="official")
    aligned.body[1, B["left_wrist"], :2] = np.nan
    assert official_failures(ref, (600, 600), sound, result=(aligned, info)) == [
        "1 points of the dance come out non-finite"]
