"""Keypoint layouts, the bone table and the drawing palette: the skeleton as data.

Every pose module walks these tables instead of spelling out limbs one by one. Indices are 0-based;
"left"/"right" are always the *person's* sides (OpenPose convention).
"""

from __future__ import annotations

from typing import NamedTuple

# ----------------------------------------------------------------------------------------------
# Keypoint layouts
# ----------------------------------------------------------------------------------------------

#: OpenPose / COCO-18 body order.
BODY_KEYPOINTS = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
BODY = {name: i for i, name in enumerate(BODY_KEYPOINTS)}
NUM_BODY = len(BODY_KEYPOINTS)  # 18

#: OpenPose hand order: wrist, then 4 points per finger from thumb to little finger.
HAND_KEYPOINTS = ("wrist",) + tuple(
    f"{finger}_{j}" for finger in ("thumb", "index", "middle", "ring", "little") for j in range(1, 5)
)
NUM_HAND = len(HAND_KEYPOINTS)  # 21

#: Hands are stored as one array with this order on the hand axis.
HAND_SIDES = ("left", "right")
LEFT_HAND, RIGHT_HAND = 0, 1
#: The body wrist each hand hangs from.
HAND_WRIST = {LEFT_HAND: BODY["left_wrist"], RIGHT_HAND: BODY["right_wrist"]}

#: iBUG-300W 68-point face layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
NUM_FACE = 68

# ----------------------------------------------------------------------------------------------
# Drawing tables (the official OpenPose/DWPose look; see docs in render.py)
# ----------------------------------------------------------------------------------------------

#: The 17 body limbs in OpenPose drawing order (limb i is drawn in BODY_PALETTE[i]).
BODY_LIMBS = tuple(
    (a - 1, b - 1)
    for a, b in (
        (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
        (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
    )
)

#: The 18-colour OpenPose palette *as written in the official code* (RGB tuples). The official
#: pipeline then swaps red and blue of the whole canvas; render.py reproduces that.
BODY_PALETTE = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)

#: The 20 hand edges: wrist -> each finger chain.
HAND_EDGES = tuple(
    edge
    for finger in range(5)
    for edge in (
        ((0 if j == 0 else 1 + 4 * finger + j - 1), 1 + 4 * finger + j) for j in range(4)
    )
)

# ----------------------------------------------------------------------------------------------
# The bone table used by alignment (and by repair to measure bone lengths)
# ----------------------------------------------------------------------------------------------


class Bone(NamedTuple):
    """A parent -> child bone. Alignment keeps the bone's direction and multiplies its length by
    the scale of ``group``; everything below ``child`` moves with it."""

    parent: int
    child: int
    group: str


#: Walked in this order (parents before children), from the neck outwards.
BODY_BONES = (
    Bone(BODY["neck"], BODY["nose"], "neck"),
    Bone(BODY["nose"], BODY["right_eye"], "face_right"),
    Bone(BODY["nose"], BODY["left_eye"], "face_left"),
    Bone(BODY["nose"], BODY["right_ear"], "face_right"),
    Bone(BODY["nose"], BODY["left_ear"], "face_left"),
    Bone(BODY["neck"], BODY["right_shoulder"], "shoulder"),
    Bone(BODY["neck"], BODY["left_shoulder"], "shoulder"),
    Bone(BODY["right_shoulder"], BODY["right_elbow"], "upper_arm"),
    Bone(BODY["left_shoulder"], BODY["left_elbow"], "upper_arm"),
    Bone(BODY["right_elbow"], BODY["right_wrist"], "lower_arm"),
    Bone(BODY["left_elbow"], BODY["left_wrist"], "lower_arm"),
    Bone(BODY["neck"], BODY["right_hip"], "torso"),
    Bone(BODY["neck"], BODY["left_hip"], "torso"),
    Bone(BODY["right_hip"], BODY["right_knee"], "upper_leg"),
    Bone(BODY["left_hip"], BODY["left_knee"], "upper_leg"),
    Bone(BODY["right_knee"], BODY["right_ankle"], "lower_leg"),
    Bone(BODY["left_knee"], BODY["left_ankle"], "lower_leg"),
)

#: Left/right mirror of every body point (for swap detection and mirrored-side fallbacks).
BODY_MIRROR = tuple(
    BODY[name.replace("right_", "@").replace("left_", "right_").replace("@", "left_")]
    for name in BODY_KEYPOINTS
)
