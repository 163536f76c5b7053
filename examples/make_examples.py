"""Build the shipped example driving motion: a short dance made by this project from keyframes.

    python examples/make_examples.py

writes, next to this file,

* ``dance_keyframes.poses.json`` -- the motion as a :class:`~steadydancer.pose.PoseSequence`
  (body 18 + both hands, 16 fps, 81 frames = 5.06 s, coordinates of a 576x1024 portrait frame);
* ``dance_keyframes.mp4`` -- the motion drawn exactly as the model sees it: rendered on the
  official 2x canvas and resized bicubic to 576x1024;
* ``astronaut.character.json`` -- the character detection of ``astronaut.png`` (pose and faces),
  so that the example's preview runs no detector (see :func:`write_character_records`).

The dancer is a forward-kinematics skeleton: each keyframe sets a few angles (torso lean, head
tilt, upper arm, forearm, wrist, thigh, shin), a hip position and how open the hands are.
Catmull-Rom splines through the keyframes give smooth motion with no stop at each key, and the
skeleton turns the angles into keypoints, so bone lengths stay constant in every frame. Nothing
here comes from a recording of a person; the motion is as free to ship as the code.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from steadydancer.constants import MODEL_FPS  # noqa: E402
from steadydancer.pose.render import official_canvas_size, render_sequence, resize_frames  # noqa: E402
from steadydancer.pose.sequence import PoseSequence  # noqa: E402
from steadydancer.pose.skeleton import BODY, LEFT_HAND, RIGHT_HAND  # noqa: E402
from steadydancer.video import write_video  # noqa: E402

WIDTH, HEIGHT = 576, 1024
NUM_FRAMES = 81  # 4n + 1, the model's default clip length

# Bone lengths in pixels of the 576x1024 frame (a standing adult filling ~75 % of the height,
# leaving room for the arms to reach out sideways and overhead).
SCALE = 0.88
TORSO = 230.0 * SCALE        # neck -> middle of the hips
SHOULDER_HALF = 58.0 * SCALE
HIP_HALF = 34.0 * SCALE
NECK_TO_NOSE = 78.0 * SCALE
UPPER_ARM = 98.0 * SCALE
FOREARM = 90.0 * SCALE
THIGH = 150.0 * SCALE
SHIN = 145.0 * SCALE

# Keyframe parameters. Limb angles are in degrees from "pointing straight down", positive =
# away from the body's midline (outward); the torso/head lean is positive towards image right.
PARAMS = (
    "hip_x", "hip_y", "lean", "head",
    "r_upper", "r_fore", "r_wrist", "l_upper", "l_fore", "l_wrist",
    "r_thigh", "r_shin", "l_thigh", "l_shin",
    "r_open", "l_open",
)

# time (s) -> parameters. A groove with a side wave, a step, arms overhead, a cross and a
# double wave, ending where it started so the clip loops.
KEYFRAMES = [
    (0.00, dict(hip_x=288, hip_y=600, lean=0, head=0, r_upper=14, r_fore=18, r_wrist=5,
                l_upper=14, l_fore=18, l_wrist=5, r_thigh=4, r_shin=2, l_thigh=4, l_shin=2,
                r_open=0.5, l_open=0.5)),
    (0.55, dict(hip_x=300, hip_y=606, lean=-4, head=-6, r_upper=62, r_fore=140, r_wrist=165,
                l_upper=20, l_fore=25, l_wrist=15, r_thigh=3, r_shin=1, l_thigh=8, l_shin=4,
                r_open=1.0, l_open=0.4)),
    (0.95, dict(hip_x=304, hip_y=600, lean=-5, head=-8, r_upper=66, r_fore=112, r_wrist=135,
                l_upper=22, l_fore=28, l_wrist=18, r_thigh=3, r_shin=1, l_thigh=9, l_shin=4,
                r_open=1.0, l_open=0.4)),
    (1.35, dict(hip_x=300, hip_y=606, lean=-4, head=-4, r_upper=64, r_fore=168, r_wrist=190,
                l_upper=20, l_fore=25, l_wrist=15, r_thigh=3, r_shin=1, l_thigh=8, l_shin=4,
                r_open=1.0, l_open=0.4)),
    (1.85, dict(hip_x=270, hip_y=612, lean=6, head=8, r_upper=35, r_fore=60, r_wrist=70,
                l_upper=40, l_fore=70, l_wrist=80, r_thigh=-2, r_shin=-1, l_thigh=24, l_shin=12,
                r_open=0.6, l_open=0.6)),
    (2.45, dict(hip_x=282, hip_y=596, lean=3, head=2, r_upper=160, r_fore=172, r_wrist=180,
                l_upper=158, l_fore=170, l_wrist=178, r_thigh=8, r_shin=4, l_thigh=14, l_shin=7,
                r_open=1.0, l_open=1.0)),
    (3.05, dict(hip_x=296, hip_y=602, lean=-3, head=-3, r_upper=52, r_fore=86, r_wrist=95,
                l_upper=54, l_fore=88, l_wrist=97, r_thigh=10, r_shin=5, l_thigh=6, l_shin=3,
                r_open=0.9, l_open=0.9)),
    (3.65, dict(hip_x=306, hip_y=610, lean=-6, head=-7, r_upper=22, r_fore=-35, r_wrist=-50,
                l_upper=24, l_fore=-32, l_wrist=-45, r_thigh=22, r_shin=10, l_thigh=-2, l_shin=-1,
                r_open=0.2, l_open=0.2)),
    (4.25, dict(hip_x=284, hip_y=602, lean=4, head=5, r_upper=48, r_fore=150, r_wrist=165,
                l_upper=48, l_fore=150, l_wrist=165, r_thigh=6, r_shin=3, l_thigh=6, l_shin=3,
                r_open=1.0, l_open=1.0)),
    (4.65, dict(hip_x=292, hip_y=598, lean=-2, head=-3, r_upper=42, r_fore=120, r_wrist=135,
                l_upper=42, l_fore=120, l_wrist=135, r_thigh=5, r_shin=2, l_thigh=5, l_shin=2,
                r_open=1.0, l_open=1.0)),
    (5.0625, dict(hip_x=288, hip_y=600, lean=0, head=0, r_upper=14, r_fore=18, r_wrist=5,
                  l_upper=14, l_fore=18, l_wrist=5, r_thigh=4, r_shin=2, l_thigh=4, l_shin=2,
                  r_open=0.5, l_open=0.5)),
]

# Hand layout in the hand's own frame: u along the hand (wrist -> fingers), v across it,
# positive towards the thumb. Each finger: base point (u, v), three segment lengths, and its
# splay angle in degrees (positive towards the thumb side) when the hand is fully open.
FINGERS = (
    ((6.0, 10.0), (15.0, 12.0, 10.0), 48.0),   # thumb
    ((36.0, 9.0), (17.0, 10.0, 8.0), 12.0),    # index
    ((38.0, 1.0), (19.0, 11.0, 9.0), 2.0),     # middle
    ((36.0, -6.0), (17.0, 10.0, 8.0), -8.0),   # ring
    ((32.0, -12.0), (13.0, 8.0, 7.0), -18.0),  # little
)


def catmull_rom(times: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Catmull-Rom spline through (times, values) -- values (K, P) -- at times t (T,).
    Non-uniform key spacing is handled by finite-difference tangents."""
    k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    t0, t1 = times[k], times[k + 1]
    h = t1 - t0
    s = ((t - t0) / h)[:, None]

    def tangent(i):
        lo, hi = np.maximum(i - 1, 0), np.minimum(i + 1, len(times) - 1)
        return (values[hi] - values[lo]) / (times[hi] - times[lo])[:, None]

    m0, m1 = tangent(k) * h[:, None], tangent(k + 1) * h[:, None]
    p0, p1 = values[k], values[k + 1]
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0
            + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * m1)


def direction(angle_deg: float, outward: float) -> np.ndarray:
    """Unit vector ``angle_deg`` from straight down; ``outward`` = +1 towards image right."""
    a = math.radians(angle_deg)
    return np.array([outward * math.sin(a), math.cos(a)])


def hand_points(wrist: np.ndarray, angle_deg: float, outward: float, openness: float) -> np.ndarray:
    """21 hand keypoints (pixels) for a hand hanging from ``wrist``, pointing ``angle_deg``.

    Palm towards the camera: the thumb is on the outward side. ``openness`` 0 (loose fist:
    fingers curled, so their projection is short) .. 1 (fingers spread and straight)."""
    along = direction(angle_deg, outward)
    # Towards the thumb: outward while the hand hangs down; it turns with the hand, so a hand
    # raised overhead (palm still to the camera) has its thumb on the inner side, as a real one.
    across = np.array([along[1], -along[0]]) * outward
    points = [wrist]
    curl = math.radians(75.0) * (1.0 - openness)
    for f, ((u, v), segments, splay) in enumerate(FINGERS):
        base = wrist + SCALE * (u * along + v * across)
        spread = math.radians(splay * (0.45 + 0.55 * openness))
        d = math.cos(spread) * along + math.sin(spread) * across
        p = base
        points.append(p)
        for j, length in enumerate(segments):
            # a curled segment points away from the camera: its image is foreshortened
            bend = curl * (j + 1) * (0.6 if f == 0 else 1.0)
            p = p + SCALE * length * max(0.15, math.cos(min(bend, math.pi / 2))) * d
            points.append(p)
    return np.array(points)


def pose_from_params(p: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Body (18, 2) and hands (2, 21, 2) in pixels from one frame's parameters."""
    body = np.zeros((18, 2))
    hip_c = np.array([p["hip_x"], p["hip_y"]])
    lean = math.radians(p["lean"])
    up = np.array([math.sin(lean), -math.cos(lean)])
    side = np.array([-up[1], up[0]])  # towards image right
    neck = hip_c + TORSO * up
    body[BODY["neck"]] = neck
    body[BODY["right_shoulder"]] = neck - SHOULDER_HALF * side  # person's right = image left
    body[BODY["left_shoulder"]] = neck + SHOULDER_HALF * side
    body[BODY["right_hip"]] = hip_c - HIP_HALF * side
    body[BODY["left_hip"]] = hip_c + HIP_HALF * side

    head = lean + math.radians(p["head"])
    head_up = np.array([math.sin(head), -math.cos(head)])
    head_side = np.array([-head_up[1], head_up[0]])
    nose = neck + NECK_TO_NOSE * head_up
    body[BODY["nose"]] = nose
    body[BODY["right_eye"]] = nose + SCALE * (12 * head_up - 14 * head_side)
    body[BODY["left_eye"]] = nose + SCALE * (12 * head_up + 14 * head_side)
    body[BODY["right_ear"]] = nose + SCALE * (4 * head_up - 32 * head_side)
    body[BODY["left_ear"]] = nose + SCALE * (4 * head_up + 32 * head_side)

    hands = np.zeros((2, 21, 2))
    for side_name, outward, hand_index in (("r", -1.0, RIGHT_HAND), ("l", 1.0, LEFT_HAND)):
        full = "right" if side_name == "r" else "left"
        shoulder = body[BODY[f"{full}_shoulder"]]
        elbow = shoulder + UPPER_ARM * direction(p[f"{side_name}_upper"], outward)
        wrist = elbow + FOREARM * direction(p[f"{side_name}_fore"], outward)
        body[BODY[f"{full}_elbow"]] = elbow
        body[BODY[f"{full}_wrist"]] = wrist
        hands[hand_index] = hand_points(wrist, p[f"{side_name}_wrist"], outward, p[f"{side_name}_open"])

        hip = body[BODY[f"{full}_hip"]]
        knee = hip + THIGH * direction(p[f"{side_name}_thigh"], outward)
        ankle = knee + SHIN * direction(p[f"{side_name}_shin"], outward)
        body[BODY[f"{full}_knee"]] = knee
        body[BODY[f"{full}_ankle"]] = ankle
    return body, hands


def build_dance(num_frames: int = NUM_FRAMES, fps: float = MODEL_FPS) -> PoseSequence:
    times = np.array([t for t, _ in KEYFRAMES])
    values = np.array([[kf[name] for name in PARAMS] for _, kf in KEYFRAMES], dtype=np.float64)
    t = np.arange(num_frames) / fps
    curves = catmull_rom(times, values, np.clip(t, times[0], times[-1]))
    # A little life between the keys: a breathing bob of the hips (2 px, 1 beat per second).
    curves[:, PARAMS.index("hip_y")] += 2.0 * np.sin(2 * np.pi * t)

    seq = PoseSequence.empty(num_frames, fps, WIDTH, HEIGHT, meta={
        "source": "examples/make_examples.py (keyframed by the SteadyDancer studio project)",
        "licence": "same licence as the project's code (Apache-2.0)",
    })
    scale = np.array([WIDTH, HEIGHT], dtype=np.float64)
    for i in range(num_frames):
        body, hands = pose_from_params(dict(zip(PARAMS, curves[i])))
        seq.body[i, :, :2] = body / scale
        seq.body[i, :, 2] = 1.0
        seq.hands[i, :, :, :2] = hands / scale
        seq.hands[i, :, :, 2] = 0.0
        seq.hands[i, :, :, 3] = 1.0
    return seq


def main(out_dir: Path = HERE) -> tuple[Path, Path]:
    seq = build_dance()
    inside = (seq.body[..., :2] > 0).all() and (seq.body[..., :2] < 1).all() \
        and (seq.hands[..., :2] > 0.01).all() and (seq.hands[..., :2] < 1).all()
    if not inside:
        raise AssertionError("the keyframed dancer leaves the frame; adjust the keyframes")
    json_path = seq.save(out_dir / "dance_keyframes.poses.json")
    canvas = official_canvas_size(WIDTH, HEIGHT)
    frames = resize_frames(render_sequence(seq, *canvas), (WIDTH, HEIGHT))
    video_path = write_video(out_dir / "dance_keyframes.mp4", frames, seq.fps, crf=20, preset="slow")
    for path in (json_path, video_path):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return json_path, video_path


#: The project's character photos, whose detections are stored beside them.
PHOTOS = ("astronaut.png",)


def write_character_records(out_dir: Path = HERE) -> list[Path]:
    """``NAME.character.json`` beside each photo of :data:`PHOTOS`: its pose and faces as the app
    detects them (``studio.inputs.character_record``), so the example's preview runs no detector.
    Needs mediapipe; rerun it when the photo, the detector or its settings change (a stale record
    is not used: the app checks the photo's hash and the detector's version and settings)."""
    from studio.inputs import CHARACTER_SUFFIX, character_record

    written = []
    for name in PHOTOS:
        photo = out_dir / name
        path = character_record(photo).save(out_dir / f"{photo.stem}{CHARACTER_SUFFIX}")
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
        written.append(path)
    return written


if __name__ == "__main__":
    main()
    write_character_records()
