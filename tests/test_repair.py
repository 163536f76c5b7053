"""Repair of corrupted pose frames and jitter smoothing (steadydancer.pose.repair)."""

from __future__ import annotations

import numpy as np
import pytest

from steadydancer.pose.repair import (
    RepairEvent,
    RepairReport,
    body_scale,
    one_euro_parameters,
    repair_sequence,
    smooth_sequence,
)
from steadydancer.pose.sequence import PoseSequence, present
from steadydancer.pose.skeleton import BODY, BODY_MIRROR, HAND_WRIST, LEFT_HAND, RIGHT_HAND

from conftest import STANDING  # a standing person, in units of image height

B = BODY
SIZE = (720, 1280)
ASPECT = SIZE[0] / SIZE[1]



def rotate(points, centre, angle):
    c, s = np.cos(angle), np.sin(angle)
    d = points - centre
    return centre + np.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], -1)


def dancer(num_frames=90, fps=30.0, freq=0.7, amp=0.6):
    """Ground truth in height units: body (T, 18, 2), hands (T, 2, 21, 2) -- a swaying person
    waving both arms (angle amp * sin(2 pi freq t) about the shoulders)."""
    base = np.array([STANDING[n] for n in sorted(B, key=B.get)])
    offsets = np.array([
        0.05 * (0.35 + 0.18 * j) * np.array([np.cos(np.deg2rad(60 + 15 * f)), np.sin(np.deg2rad(60 + 15 * f))])
        for f in range(5) for j in range(1, 5)
    ])  # 20 finger points below the wrist, finger by finger
    bodies, hands = [], []
    for t in range(num_frames):
        time = t / fps
        body = base + np.array([0.03 * np.sin(2 * np.pi * 0.3 * time), 0.0])
        angle = amp * np.sin(2 * np.pi * freq * time)
        for side, sign in (("right", 1), ("left", -1)):
            sh = body[B[f"{side}_shoulder"]]
            arm = [B[f"{side}_elbow"], B[f"{side}_wrist"]]
            body[arm] = rotate(body[arm], sh, sign * angle)
        hand = []
        for h in (LEFT_HAND, RIGHT_HAND):
            w = body[HAND_WRIST[h]]
            hand.append(np.concatenate([w[None], w + offsets]))
        bodies.append(body)
        hands.append(np.stack(hand))
    return np.array(bodies), np.array(hands)


def to_sequence(body_h, hands_h, fps=30.0, conf=0.9) -> PoseSequence:
    t_len = body_h.shape[0]
    seq = PoseSequence.empty(t_len, fps, *SIZE)
    body = seq.body.copy()
    body[..., 0] = body_h[..., 0] / ASPECT
    body[..., 1] = body_h[..., 1]
    body[..., 2] = np.where(np.isfinite(body_h[..., 0]), conf, 0)
    hands = seq.hands.copy()
    hands[..., 0] = hands_h[..., 0] / ASPECT
    hands[..., 1] = hands_h[..., 1]
    hands[..., 3] = np.where(np.isfinite(hands_h[..., 0]), conf, 0)
    return seq.replace(body=body, hands=hands)


def h_units(points):
    xy = np.array(points[..., :2], dtype=np.float64)
    xy[..., 0] *= ASPECT
    return xy


def kinds_by_frame(report: RepairReport) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for e in report.events:
        out.setdefault(e.frame, set()).add(e.kind)
    return out


@pytest.fixture(scope="module")
def clean():
    rng = np.random.default_rng(3)
    body, hands = dancer()
    body = body + rng.normal(0, 0.002, body.shape)
    hands = hands + rng.normal(0, 0.001, hands.shape)
    return body, hands


def test_clean_dance_is_left_alone(clean):
    body, hands = clean
    seq = to_sequence(body, hands)
    repaired, report = repair_sequence(seq)
    assert report.events == [] and report.summary() == "no frames repaired"
    np.testing.assert_allclose(repaired.body, seq.body)
    np.testing.assert_allclose(repaired.hands, seq.hands)


def test_fast_genuine_motion_is_not_flagged():
    """Arms swinging +-0.9 rad at 1.5 Hz sampled at 16 fps: wrists move ~0.1 height per frame."""
    body, hands = dancer(num_frames=64, fps=16.0, freq=1.5, amp=0.9)
    _, report = repair_sequence(to_sequence(body, hands, fps=16.0))
    assert report.events == []


def test_genuine_step_and_person_leaving_are_not_corruption(clean):
    """A wrist snapping to a new place and staying there (a step, 0.8 torso lengths in one
    frame) is motion, not a jump; the person leaving the picture for good is not a collapse."""
    body, hands = clean[0].copy(), clean[1].copy()
    body[40:, B["left_wrist"]] += [-0.2, 0.0]
    hands[40:, LEFT_HAND] += [-0.2, 0.0]
    body[80:] = np.nan
    hands[80:] = np.nan
    repaired, report = repair_sequence(to_sequence(body, hands))
    assert report.events == [], report.summary()


def test_injected_corruption_detected_and_repaired(clean):
    truth_body, truth_hands = clean
    body, hands = truth_body.copy(), truth_hands.copy()
    mirror = list(BODY_MIRROR)
    body[20] = truth_body[20, mirror]                      # whole-body swap, 2 frames
    body[21] = truth_body[21, mirror]
    arm_r = [B["right_shoulder"], B["right_elbow"], B["right_wrist"]]
    arm_l = [B["left_shoulder"], B["left_elbow"], B["left_wrist"]]
    body[35, arm_r + arm_l] = truth_body[35, arm_l + arm_r]  # arms only
    body[50, B["right_wrist"]] += [0.18, -0.10]            # a wrist jumps for one frame
    lost = [j for j in range(18) if j not in (B["nose"], B["neck"], B["right_eye"], B["left_eye"])]
    body[65:67, lost] = np.nan                             # confidence collapse, 2 frames
    hands[86] = truth_hands[86, ::-1]                      # hands swapped
    hands[80, LEFT_HAND] += [0.15, 0.05]                   # a hand jumps
    seq = to_sequence(body, hands)

    repaired, report = repair_sequence(seq, max_gap=4)
    kinds = kinds_by_frame(report)
    assert set(kinds) == {20, 21, 35, 50, 65, 66, 80, 86}, report.summary()
    assert kinds[20] == {"left/right swap"} and kinds[21] == {"left/right swap"}
    assert [e.part for e in report.events if e.frame == 20] == ["body"]
    assert kinds[35] == {"left/right swap"}
    assert [e.part for e in report.events if e.frame == 35] == ["arms"]
    assert kinds[50] == {"jump"} and [e.part for e in report.events if e.frame == 50] == ["right_wrist"]
    assert kinds[65] == {"confidence collapse"} and kinds[66] == {"confidence collapse"}
    assert kinds[86] == {"hand swap"}
    assert kinds[80] == {"jump"} and [e.part for e in report.events if e.frame == 80] == ["left_hand"]

    # Repaired close to the ground truth (torso length here is 0.25).
    err_body = np.linalg.norm(h_units(repaired.body) - truth_body, axis=-1)
    err_hands = np.linalg.norm(h_units(repaired.hands) - truth_hands, axis=-1)
    assert np.isfinite(err_body).all() and np.isfinite(err_hands).all()
    for t in (20, 21, 35, 86):  # swapped back: exact
        assert err_body[t].max() < 1e-6 and err_hands[t].max() < 1e-6
    assert err_body[50, B["right_wrist"]] < 0.02
    assert err_body[65:67].max() < 0.03
    assert err_hands[80].max() < 0.02
    # Interpolated points keep a confidence; the summary names the frames and reasons.
    assert (repaired.body[65:67, lost, 2] > 0).all()
    summary = report.summary()
    assert summary.startswith("8 frames repaired:")
    assert "20-21 (left/right swap)" in summary
    assert "65-66 (confidence collapse, interpolated)" in summary
    assert "50 (jump, interpolated)" in summary
    d = report.to_dict()
    assert d["frames"] == [20, 21, 35, 50, 65, 66, 80, 86] and len(d["events"]) == len(report.events)
    assert repaired.meta["repair"]["summary"] == summary


def test_gaps_longer_than_max_gap_stay_missing(clean):
    body, hands = clean[0].copy(), clean[1].copy()
    body[10:13, B["left_knee"]] = np.nan   # 3 frames: filled
    body[30:40, B["left_ankle"]] = np.nan  # 10 frames: left missing
    body[:2, B["nose"]] = np.nan           # at the start: nothing to interpolate from
    repaired, report = repair_sequence(to_sequence(body, hands), max_gap=4)
    ok = present(repaired.body)
    assert ok[10:13, B["left_knee"]].all()
    assert not ok[30:40, B["left_ankle"]].any()
    assert not ok[:2, B["nose"]].any()
    assert {e.frame for e in report.events} == {10, 11, 12}
    assert all(e.kind == "gap" for e in report.events)
    assert "10-12 (short gap, interpolated)" in report.summary()


def test_report_summary_format():
    report = RepairReport([
        RepairEvent(12, "body", "left/right swap", "whole skeleton mirrored back"),
        RepairEvent(40, "body", "confidence collapse", "3 body points vs 18; 15 points interpolated"),
        RepairEvent(41, "body", "confidence collapse", "2 body points vs 18; 16 points interpolated"),
    ])
    assert report.summary() == ("3 frames repaired: 12 (left/right swap), "
                                "40-41 (confidence collapse, interpolated)")


def test_smoothing_reduces_jitter_and_keeps_fast_steps():
    rng = np.random.default_rng(1)
    t_len, fps = 120, 30.0
    base = np.array([STANDING[n] for n in sorted(B, key=B.get)])
    truth = np.repeat(base[None], t_len, 0)
    truth[60:, B["right_wrist"], 0] += 0.25  # a genuine fast move: one torso length in one frame
    noisy = truth + rng.normal(0, 0.004, truth.shape)
    hands = np.full((t_len, 2, 21, 2), np.nan)
    seq = to_sequence(noisy, hands)
    static = [j for j in range(18) if j != B["right_wrist"]]
    rms_before = np.sqrt(np.mean((noisy[:, static] - truth[:, static]) ** 2))
    reductions = {}
    for strength in (0.5, 1.0):
        out = h_units(smooth_sequence(seq, strength).body)
        rms_after = np.sqrt(np.mean((out[:, static] - truth[:, static]) ** 2))
        reductions[strength] = rms_before / rms_after
        wrist = out[:, B["right_wrist"], 0] - base[B["right_wrist"], 0]
        half, ninety = int(np.argmax(wrist > 0.125)), int(np.argmax(wrist > 0.225))
        assert half == 60 and ninety <= 62, (strength, half, ninety)
    assert reductions[0.5] > 2.2 and reductions[1.0] > 3.5, reductions
    assert reductions[1.0] > reductions[0.5]


def test_smoothing_respects_gaps_and_strength_zero(clean):
    body, hands = clean[0].copy(), clean[1].copy()
    body[40:45, B["left_wrist"]] = np.nan
    hands[10:20, RIGHT_HAND] = np.nan
    seq = to_sequence(body, hands)
    same = smooth_sequence(seq, 0.0)
    np.testing.assert_array_equal(same.body, seq.body)
    np.testing.assert_array_equal(same.hands, seq.hands)
    out = smooth_sequence(seq, 0.8)
    for a, b in ((out.body, seq.body), (out.hands, seq.hands), (out.face, seq.face)):
        np.testing.assert_array_equal(present(a), present(b))
        assert np.isfinite(a[present(a)]).all()
    # The points on either side of the gap are not dragged into it (still near the truth).
    err = np.linalg.norm(h_units(out.body[[39, 45], B["left_wrist"]]) - clean[0][[39, 45], B["left_wrist"]], axis=-1)
    assert err.max() < 0.02
    np.testing.assert_array_equal(out.body[..., 2], seq.body[..., 2])
    assert out.meta["smoothing"]["strength"] == 0.8
    with pytest.raises(ValueError):
        smooth_sequence(seq, 1.5)


def test_one_euro_parameters_monotone():
    cutoffs = [one_euro_parameters(s)[0] for s in (0.1, 0.5, 1.0)]
    assert cutoffs[0] > cutoffs[1] > cutoffs[2] > 0


def test_body_scale_is_torso_length(clean):
    assert body_scale(to_sequence(*clean)) == pytest.approx(0.25, abs=0.005)
