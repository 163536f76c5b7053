"""The negative (augmented) pose condition (steadydancer.pose.augment)."""

from __future__ import annotations

import numpy as np
import pytest

from steadydancer.pose.augment import augment_sequence
from steadydancer.pose.sequence import PoseSequence, present
from steadydancer.pose.skeleton import BODY

B = BODY


def aligned_sequence(num_frames: int, seed: int = 0) -> PoseSequence:
    """Random but complete poses (normalised) around a neck that wanders over the canvas."""
    rng = np.random.default_rng(seed)
    seq = PoseSequence.empty(num_frames, 16.0, 576, 1024)
    body, hands, face = seq.body.copy(), seq.hands.copy(), seq.face.copy()
    neck = rng.uniform(0.3, 0.7, (num_frames, 1, 2))
    body[..., :2] = neck + rng.normal(0, 0.15, (num_frames, 18, 2))
    body[:, B["neck"], :2] = neck[:, 0]
    body[..., 2] = 0.8
    hands[..., :2] = neck[:, None] + rng.normal(0, 0.2, (num_frames, 2, 21, 2))
    hands[..., 2] = rng.normal(0, 0.01, (num_frames, 2, 21))
    hands[..., 3] = 0.7
    face[..., :2] = neck + np.array([0.0, -0.1]) + rng.normal(0, 0.02, (num_frames, 68, 2))
    face[..., 2] = 0.9
    return seq.replace(body=body, hands=hands, face=face)


def test_per_frame_scale_and_aspect_about_the_neck():
    seq = aligned_sequence(40)
    out = augment_sequence(seq, seed=7)
    s = np.array(out.meta["augment"]["scale"])
    a = np.array(out.meta["augment"]["aspect"])
    assert s.shape == a.shape == (40,)
    neck = seq.body[:, B["neck"], :2].astype(np.float64)
    np.testing.assert_allclose(out.body[:, B["neck"], :2], neck, atol=1e-6)  # neck stays
    factor = np.stack([s * a, s], -1)
    expected = neck[:, None] + factor[:, None] * (seq.body[..., :2] - neck[:, None])
    np.testing.assert_allclose(out.body[..., :2], expected, atol=1e-5)
    expected_hands = neck[:, None, None] + factor[:, None, None] * (seq.hands[..., :2] - neck[:, None, None])
    np.testing.assert_allclose(out.hands[..., :2], expected_hands, atol=1e-5)
    # Face: not scaled, only shifted by neck - (neck scaled about the origin), as the official code.
    np.testing.assert_allclose(out.face[..., :2], seq.face[..., :2] + (neck * (1 - factor))[:, None], atol=1e-5)
    # Confidence, hand depth and the frame size are untouched.
    np.testing.assert_array_equal(out.body[..., 2], seq.body[..., 2])
    np.testing.assert_array_equal(out.hands[..., 2:], seq.hands[..., 2:])
    assert (out.width, out.height, out.fps) == (seq.width, seq.height, seq.fps)


def test_draw_statistics_match_the_official_ranges():
    seq = aligned_sequence(4000)
    out = augment_sequence(seq, seed=123)
    s = np.array(out.meta["augment"]["scale"])
    a = np.array(out.meta["augment"]["aspect"])
    for values, (lo, hi) in ((s, (0.7, 1.3)), (a, (0.6, 1.4))):
        assert values.min() >= lo and values.max() <= hi
        assert values.min() < lo + 0.01 and values.max() > hi - 0.01
        assert values.mean() == pytest.approx((lo + hi) / 2, abs=0.01)
        assert values.std() == pytest.approx((hi - lo) / np.sqrt(12), rel=0.05)
        counts, _ = np.histogram(values, bins=10, range=(lo, hi))
        assert counts.min() > 0.8 * len(values) / 10 and counts.max() < 1.2 * len(values) / 10
    assert abs(np.corrcoef(s, a)[0, 1]) < 0.05  # independent draws
    assert abs(np.corrcoef(s[:-1], s[1:])[0, 1]) < 0.05  # independent frames
    # The measured stretch of a frame matches its draw: the neck-to-wrist vector's x and y.
    t = 5
    d_in = seq.body[t, B["left_wrist"], :2] - seq.body[t, B["neck"], :2]
    d_out = out.body[t, B["left_wrist"], :2] - out.body[t, B["neck"], :2]
    np.testing.assert_allclose(d_out / d_in, [s[t] * a[t], s[t]], rtol=1e-4)


def test_seed_reproducible_and_custom_ranges():
    seq = aligned_sequence(10)
    one = augment_sequence(seq, seed=5)
    two = augment_sequence(seq, seed=5)
    other = augment_sequence(seq, seed=6)
    np.testing.assert_array_equal(one.body, two.body)
    np.testing.assert_array_equal(one.face, two.face)
    assert not np.allclose(one.body, other.body)
    fixed = augment_sequence(seq, seed=1, scale_range=(1.0, 1.0), aspect_range=(1.0, 1.0))
    np.testing.assert_allclose(fixed.body, seq.body, atol=1e-6)
    np.testing.assert_allclose(fixed.face, seq.face, atol=1e-6)
    with pytest.raises(ValueError):
        augment_sequence(seq, seed=1, scale_range=(1.3, 0.7))


def test_missing_points_and_missing_neck():
    seq = aligned_sequence(6)
    body, hands, face = seq.body.copy(), seq.hands.copy(), seq.face.copy()
    body[1, B["neck"], :2] = np.nan                  # neck missing: shoulders' middle is the centre
    body[2, :, :2] = np.nan                          # no body at all: frame kept as is
    body[3, B["left_knee"], :2] = np.nan
    hands[4, 1, :, :2] = np.nan
    seq = seq.replace(body=body, hands=hands, face=face)
    out = augment_sequence(seq, seed=0)
    for a, b in ((out.body, seq.body), (out.hands, seq.hands), (out.face, seq.face)):
        np.testing.assert_array_equal(present(a), present(b))
        assert np.isfinite(a[present(a)]).all()
    mid = (seq.body[1, B["right_shoulder"], :2] + seq.body[1, B["left_shoulder"], :2]) / 2
    np.testing.assert_allclose((out.body[1, B["right_shoulder"], :2] + out.body[1, B["left_shoulder"], :2]) / 2,
                               mid, atol=1e-6)
    np.testing.assert_array_equal(out.hands[2], seq.hands[2])
    np.testing.assert_array_equal(out.face[2], seq.face[2])
