"""The pose data model: layout, explicit missing points, JSON round trip, the skeleton tables."""

import json
import math

import numpy as np
import pytest

from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose.sequence import FORMAT_VERSION, PoseFrame, PoseSequence, present
from steadydancer.pose.skeleton import (
    BODY, BODY_BONES, BODY_KEYPOINTS, BODY_LIMBS, BODY_MIRROR, BODY_PALETTE, HAND_EDGES, HAND_WRIST,
    LEFT_HAND, RIGHT_HAND,
)


def random_sequence(n=5, seed=0):
    rng = np.random.default_rng(seed)
    seq = PoseSequence.empty(n, fps=16, width=640, height=360, meta={"source": "test"})
    seq.body[:, :, :2] = rng.random((n, 18, 2))
    seq.body[:, :, 2] = rng.random((n, 18))
    seq.hands[:, :, :, :3] = rng.random((n, 2, 21, 3))
    seq.hands[:, :, :, 3] = rng.random((n, 2, 21))
    seq.face[:, :, :2] = rng.random((n, 68, 2))
    seq.face[:, :, 2] = 1.0
    # some explicit holes
    seq.body[1, 4, :2] = np.nan
    seq.hands[2, RIGHT_HAND] = np.nan
    seq.face[3] = np.nan
    return PoseSequence(seq.body, seq.hands, seq.face, seq.fps, seq.width, seq.height, seq.meta)


def test_missing_points_are_nan_with_zero_confidence():
    seq = random_sequence()
    assert not present(seq.body[1:2, 4]).any()
    assert seq.body[1, 4, 2] == 0.0
    assert (seq.hands[2, RIGHT_HAND, :, 2:] == 0).all()  # z and confidence zeroed
    # A missing point never turns into a number through arithmetic.
    moved = seq.body[1] * 2.0 + 0.1
    assert np.isnan(moved[4, :2]).all() and np.isfinite(moved[3, :2]).all()


def test_empty_frame_has_no_person():
    frame = PoseFrame.empty()
    assert not frame.has_person
    assert frame.body.shape == (18, 3) and frame.hands.shape == (2, 21, 4) and frame.face.shape == (68, 3)


def test_wrong_shapes_are_rejected():
    with pytest.raises(ValueError):
        PoseFrame(np.zeros((17, 3)), np.zeros((2, 21, 4)), np.zeros((68, 3)))
    seq = random_sequence()
    with pytest.raises(ValueError):
        PoseSequence(seq.body, seq.hands[:-1], seq.face, 16, 640, 360)
    with pytest.raises(ValueError):
        PoseSequence(seq.body, seq.hands, seq.face, 0, 640, 360)


def test_json_round_trip_is_exact(tmp_path):
    seq = random_sequence()
    seq.meta["scales"] = {"neck": np.float32(1.5), "bad": float("nan")}
    path = seq.save(tmp_path / "poses.json")
    data = json.loads(path.read_text())
    assert data["version"] == FORMAT_VERSION and data["num_frames"] == len(seq)
    assert data["frames"][1]["body"][4] is None  # missing -> null, never -1
    back = PoseSequence.load(path)
    for part in ("body", "hands", "face"):
        np.testing.assert_array_equal(getattr(back, part), getattr(seq, part))
    assert (back.fps, back.width, back.height) == (16, 640, 360)
    assert back.meta["scales"] == {"neck": 1.5, "bad": None}


def test_loading_garbage_is_a_user_error(tmp_path):
    bad = tmp_path / "poses.json"
    bad.write_text("this is not json")
    with pytest.raises(SteadyDancerInputError, match="Could not read poses"):
        PoseSequence.load(bad)
    bad.write_text(json.dumps({"format": "steadydancer-poses", "version": 99, "frames": []}))
    with pytest.raises(SteadyDancerInputError, match="version 99"):
        PoseSequence.load(bad)


def test_indexing_and_slicing():
    seq = random_sequence(6)
    assert isinstance(seq[2], PoseFrame)
    np.testing.assert_array_equal(seq[2].body, seq.body[2])
    sub = seq[1:4]
    assert len(sub) == 3 and sub.fps == seq.fps
    sub.body[0, 0, 0] = 123.0  # slices are copies: the original is untouched
    assert seq.body[1, 0, 0] != 123.0
    rebuilt = PoseSequence.from_frames(list(seq), seq.fps, seq.width, seq.height)
    np.testing.assert_array_equal(rebuilt.hands, seq.hands)
    assert math.isclose(seq.duration, 6 / 16)


def test_bone_table_is_a_tree_walked_parents_first():
    seen = {BODY["neck"]}
    for bone in BODY_BONES:
        assert bone.parent in seen, f"{BODY_KEYPOINTS[bone.child]} walked before its parent"
        assert bone.child not in seen, f"{BODY_KEYPOINTS[bone.child]} has two parents"
        seen.add(bone.child)
    assert seen == set(range(18))  # every body point is reached from the neck
    # Left and right limbs share a scale group; face groups are per side.
    groups = {BODY_KEYPOINTS[b.child]: b.group for b in BODY_BONES}
    assert groups["left_elbow"] == groups["right_elbow"] == "upper_arm"
    assert groups["left_eye"] == "face_left" and groups["right_ear"] == "face_right"
    assert HAND_WRIST[LEFT_HAND] == BODY["left_wrist"] and HAND_WRIST[RIGHT_HAND] == BODY["right_wrist"]


def test_mirror_and_drawing_tables():
    assert all(BODY_MIRROR[BODY_MIRROR[i]] == i for i in range(18))
    assert BODY_KEYPOINTS[BODY_MIRROR[BODY["left_knee"]]] == "right_knee"
    assert BODY_MIRROR[BODY["nose"]] == BODY["nose"]
    assert len(BODY_LIMBS) == 17 and len(BODY_PALETTE) == 18
    assert BODY_LIMBS[12] == (BODY["neck"], BODY["nose"])
    assert len(HAND_EDGES) == 20 and HAND_EDGES[0] == (0, 1) and HAND_EDGES[4] == (0, 5)
    assert all(b == a + 1 for a, b in HAND_EDGES if a != 0)
